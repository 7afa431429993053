"""OMOP CDM 5.4 reader: corrupt fixture, Eunomia CSV zip / folder, DuckDB database file."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import zipfile
from pathlib import Path

import duckdb
import orjson
import pytest

from trialsieve.codes import LOINC, OMOP
from trialsieve.ingest.omop import is_postgres_url, omop_concept_of
from trialsieve.ingest.runner import run_ingest
from trialsieve.kidney.creatinine import UMOL_PER_MGDL
from trialsieve.store import open_store

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "omop_corrupt"
EUNOMIA = "omop_eunomia_synthea27nj/Synthea27Nj_5.4.zip"
#: records per table in Eunomia Synthea27Nj 5.4 (data lines of each CSV)
EUNOMIA_COUNTS = {
    "person": 28,
    "measurement": 10040,
    "observation": 8099,
    "condition_occurrence": 470,
    "procedure_occurrence": 1649,
    "drug_exposure": 883,
    "visit_occurrence": 1791,
}
EVENT_COLS = (
    "patient_id, kind, analyte, code_system, code, display, start_time, end_time, value, unit, "
    "value_text, orig_value, orig_unit, ref_low, ref_high, dose_value, dose_unit, route, status, "
    "source"
)


def _rows(store: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect()
    open_store(store, con)
    return con.execute(sql).fetchall()


def _rejects(store: Path) -> dict[str, str]:
    lines = (store / "rejects.jsonl").read_text().splitlines()
    return {r["locator"]: r["reason"] for r in map(json.loads, lines)}


def test_corrupt_fixture_gives_exactly_the_expected_rejects(tmp_path: Path) -> None:
    s = run_ingest("omop", FIXTURE, tmp_path)
    assert s.balanced()
    assert _rejects(tmp_path) == {
        "person_id=1": "duplicate person_id",
        "measurement_id=10": "duplicate measurement_id",
        "measurement_id=11": "implausible value: creatinine: implausible value -88.4 umol/L "
        "(plausible range 5..3000 umol/L)",
        "measurement_id=12": "unknown unit: creatinine: unknown unit 'mg/furlong' "
        "(canonical unit umol/L)",
        "measurement/measurement_id=13": "unknown patient",
        "measurement_id=14": "missing time (measurement_date)",
        "measurement_id=15": "unmapped: concept 0, no source concept and no source value",
        "measurement_id=16": "impossible date in measurement_date: '2023-02-30'",
        "condition_occurrence_id=3": "end before start (2020-01-01 00:00 < 2020-06-01 00:00)",
    }
    assert s.by_type["person"].warnings == 2  # no year of birth; year only
    assert s.by_type["measurement"].read == 10
    assert s.by_type["measurement"].stored == 3


def test_corrupt_fixture_values_codes_and_patients(tmp_path: Path) -> None:
    run_ingest("omop", FIXTURE, tmp_path)
    crea = _rows(
        tmp_path,
        "SELECT code_system, code, value, unit, orig_value, orig_unit, ref_low, ref_high, "
        "start_time, display, source FROM events WHERE analyte = 'creatinine'",
    )
    assert crea == [
        (LOINC, "2160-0", pytest.approx(1.5 * UMOL_PER_MGDL), "umol/L", "1.5", "mg/dL",
         pytest.approx(0.6 * UMOL_PER_MGDL), pytest.approx(1.2 * UMOL_PER_MGDL),
         dt.datetime(2024, 1, 10, 7, 30),
         "Creatinine [Mass/volume] in Serum or Plasma [omop:3016723; source:CREA]",
         "measurement/measurement_id=10"),
    ]  # fmt: skip
    assert omop_concept_of(str(crea[0][9])) == (3016723, "CREA")
    # a concept missing from CONCEPT keeps its concept id as the code, value as given
    assert _rows(tmp_path, "SELECT code_system, code, value, unit, kind FROM events "
                 "WHERE source = 'measurement/measurement_id=18'") == [
        (OMOP, "777777", 3.3, "widgets", "lab")
    ]  # fmt: skip
    assert _rows(tmp_path, "SELECT kind, analyte, value FROM events WHERE code = '8480-6'") == [
        ("vital", "sbp", 128.0)
    ]
    # standard SNOMED concept; concept 0 falls back to the source concept (ICD-10-CM N18.4)
    assert _rows(tmp_path, "SELECT code_system, code FROM events WHERE kind = 'condition' "
                 "ORDER BY start_time") == [
        ("http://snomed.info/sct", "709044004"), ("http://hl7.org/fhir/sid/icd-10-cm", "N18.4")
    ]  # fmt: skip
    assert _rows(
        tmp_path, "SELECT start_time, end_time, route FROM events WHERE kind = 'medication'"
    ) == [
        (dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 31), "intravenous")
    ]  # fmt: skip  (end = start + days_supply 30)
    visit = "SELECT code_system, code, end_time FROM events WHERE kind = 'encounter'"
    assert _rows(tmp_path, visit) == [(OMOP, "9201", dt.datetime(2024, 1, 15))]
    assert _rows(tmp_path, "SELECT patient_id, birth_date, sex, deceased_date FROM patients "
                 "ORDER BY patient_id") == [
        ("1", dt.date(1960, 3, 15), "male", None),
        ("2", None, "female", None),
        ("3", dt.date(1975, 1, 1), "female", dt.date(2024, 2, 1)),
    ]  # fmt: skip


def test_a_measurement_with_an_operator_keeps_it(tmp_path: Path) -> None:
    """operator_concept_id other than "=" (a bound such as "<0.3"): the bound is the value,
    value_text holds the comparator screening reads (screen.bounds: "<", "<=", ">=", ">"),
    orig_value the operator as the source names it (CONCEPT name, else the standard concept's
    symbol). An operator that is neither is a reject: the number cannot be read."""
    src = tmp_path / "omop"
    shutil.copytree(FIXTURE, src)
    with (src / "concept.csv").open("a") as f:  # a site's own operator concept
        f.write("2000000001,≥,Meas Value Operator,Local,Qualifier Value,,GE,1970-01-01,"
                "2099-12-31,\n")  # fmt: skip
    measurements = ((40, 4171756, "0.3"), (41, 4172703, "1.1"), (42, 2000000001, "9"),
                    (43, 2000000002, "9"))  # fmt: skip
    with (src / "measurement.csv").open("a") as f:
        for mid, op, value in measurements:
            f.write(f"{mid},1,3016723,2024-01-20,,,0,{op},{value},0,8840,,,,,,CREA,0,mg/dL,0,"
                    f"{value},,\n")  # fmt: skip
    s = run_ingest("omop", src, tmp_path / "store")
    assert s.balanced()
    rejects = [orjson.loads(x) for x in (tmp_path / "store" / "rejects.jsonl").open("rb")]
    added = [r for r in rejects if r["locator"].startswith("measurement_id=4")]
    assert [(r["locator"], r["reason"]) for r in added] == [
        ("measurement_id=43", "unknown value operator: operator_concept_id 2000000002")
    ]
    rows = _rows(
        tmp_path / "store",
        "SELECT source, value, value_text, orig_value FROM events "
        "WHERE source LIKE 'measurement/measurement_id=4_' ORDER BY source",
    )
    mg = UMOL_PER_MGDL
    assert rows == [
        ("measurement/measurement_id=40", pytest.approx(0.3 * mg), "<0.3", "<0.3"),  # no CONCEPT
        ("measurement/measurement_id=41", pytest.approx(1.1 * mg), None, "1.1"),  # "="
        ("measurement/measurement_id=42", pytest.approx(9 * mg), ">=9", "≥9"),  # CONCEPT name
    ]


def test_omop_concept_of() -> None:
    assert omop_concept_of("Body weight [omop:3025315; source:29463-7]") == (3025315, "29463-7")
    assert omop_concept_of("X [omop:0; source:]") == (0, None)
    assert omop_concept_of("no suffix") == (None, None)
    assert omop_concept_of(None) == (None, None)


def test_postgres_url_detection() -> None:
    assert is_postgres_url("postgresql://u@h:5432/db?schema=cdm")
    assert is_postgres_url(str(Path("postgresql://u@h/db")))  # Path() collapses '//'
    assert is_postgres_url("postgres://h/db")
    assert not is_postgres_url("/data/omop.duckdb")


def _eunomia_csv(zip_path: Path, table: str) -> str:
    with zipfile.ZipFile(zip_path) as z:
        return z.read(f"{table.upper()}.csv").decode()


def test_eunomia_zip_accounts_for_every_record(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / EUNOMIA
    s = run_ingest("omop", src, tmp_path, dataset="eunomia")
    assert s.balanced()
    for table, n in EUNOMIA_COUNTS.items():
        c = s.by_type[table]
        assert c.read == n, table
        assert c.read == c.stored + c.rejected_total, table
    # creatinine (LOINC 38483-4 blood, 2160-0 serum) comes out in umol/L
    crea = _rows(tmp_path, "SELECT count(*), min(value), max(value), any_value(unit) "
                 "FROM events WHERE analyte = 'creatinine'")[0]  # fmt: skip
    assert crea[0] == 241 and crea[3] == "umol/L"
    assert 0.5 * UMOL_PER_MGDL < float(crea[1]) < float(crea[2]) < 5 * UMOL_PER_MGDL  # type: ignore[arg-type]


def test_eunomia_measurements_keep_their_concept_ids(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / EUNOMIA
    run_ingest("omop", src, tmp_path, dataset="eunomia")
    stored = {
        str(source).rsplit("=", 1)[1]: omop_concept_of(str(display))[0]
        for source, display in _rows(
            tmp_path, "SELECT source, display FROM events WHERE source LIKE 'measurement/%'"
        )
    }
    con = duckdb.connect()
    csv_path = tmp_path / "measurement.csv"
    csv_path.write_text(_eunomia_csv(src, "measurement"))
    expected = {
        str(mid): int(cid)
        for mid, cid in con.execute(
            "SELECT measurement_id, measurement_concept_id FROM read_csv(?, all_varchar=true)",
            [str(csv_path)],
        ).fetchall()
    }
    assert len(expected) == EUNOMIA_COUNTS["measurement"]
    assert stored == expected


def test_eunomia_folder_and_duckdb_file_match_the_zip(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / EUNOMIA
    folder = tmp_path / "csv"
    folder.mkdir()
    with zipfile.ZipFile(src) as z:
        for name in z.namelist():
            if not name.startswith("__MACOSX") and name.endswith(".csv"):
                # lower-case file names, as some exports write them
                (folder / name.lower()).write_bytes(z.read(name))
    db = tmp_path / "eunomia.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE SCHEMA cdm")
    for table in (*EUNOMIA_COUNTS, "concept", "death"):
        con.execute(
            f"CREATE TABLE cdm.{table} AS SELECT * FROM read_csv(?, header=true)",
            [str(folder / f"{table}.csv")],
        )
    con.close()
    stores = {}
    for name, source in (("zip", src), ("folder", folder), ("duckdb", db)):
        store = tmp_path / f"store_{name}"
        s = run_ingest("omop", source, store, dataset="eunomia")
        assert s.balanced()
        assert {k: s.by_type[k].read for k in EUNOMIA_COUNTS} == EUNOMIA_COUNTS
        stores[name] = _rows(store, f"SELECT {EVENT_COLS} FROM events ORDER BY source, code")
        stores[name + "_p"] = _rows(store, "SELECT * FROM patients ORDER BY patient_id")
    assert stores["folder"] == stores["zip"]
    assert stores["duckdb"] == stores["zip"]
    assert stores["duckdb_p"] == stores["zip_p"]


def test_reingest_is_idempotent(tmp_path: Path) -> None:
    run_ingest("omop", FIXTURE, tmp_path)
    first = _rows(tmp_path, "SELECT * FROM events ORDER BY event_id")
    run_ingest("omop", FIXTURE, tmp_path)
    assert _rows(tmp_path, "SELECT * FROM events ORDER BY event_id") == first
