"""``trialsieve synth``: determinism, chunk invariance, rates, schema, FHIR and AKI round trips."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from trialsieve.cli.synth import command, parse_as_of
from trialsieve.codes import analyte_for_code
from trialsieve.ingest.runner import run_ingest
from trialsieve.kidney.aki_inputs import (
    connect,
    load_creatinine,
    load_patients,
    load_rrt,
    load_urine,
    load_weights,
)
from trialsieve.kidney.creatinine import UMOL_PER_MGDL
from trialsieve.kidney.egfr import egfr
from trialsieve.store import open_store
from trialsieve.store.reader import in_screening_order
from trialsieve.store.schema import (
    EVENTS_ORDER,
    EVENTS_ROW_GROUP,
    EVENTS_SCHEMA,
    PATIENTS_SCHEMA,
)
from trialsieve.synth.generator import SynthConfig, chunks
from trialsieve.synth.trajectories import aki_factor, creatinine_for_egfr, cystatin_for_egfr
from trialsieve.synth.writers import _runs, write_fhir, write_pyaki, write_store
from trialsieve.units import ANALYTES

AS_OF = dt.datetime(2026, 6, 1, 8, 0)


@pytest.fixture(scope="module")
def store2000(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "store"
    write_store(SynthConfig(patients=2000, seed=7), out)
    return out


def _events(store: Path) -> pa.Table:
    con = duckdb.connect()
    open_store(store, con)
    return con.sql("SELECT * FROM events ORDER BY event_id").to_arrow_table()


def _assert_in_store_layout(store: Path) -> None:
    """One events file, in the store's order as the store writer writes it (nulls last), saying
    so, in row groups of the store's size."""
    (part,) = (store / "events").glob("*.parquet")
    ordered = duckdb.sql(f"SELECT {', '.join(EVENTS_ORDER)} FROM read_parquet('{part}')").fetchall()
    assert ordered == sorted(ordered, key=lambda r: tuple((x is None, x or "") for x in r))
    assert in_screening_order(store)
    md = pq.ParquetFile(part).metadata
    sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
    assert sizes[:-1] == [EVENTS_ROW_GROUP] * (len(sizes) - 1) and 0 < sizes[-1] <= EVENTS_ROW_GROUP


def _patients(store: Path) -> pa.Table:
    con = duckdb.connect()
    open_store(store, con)
    return con.sql("SELECT * FROM patients ORDER BY patient_id").to_arrow_table()


# -- trajectories --------------------------------------------------------------------------------
def test_creatinine_for_egfr_inverts_ckd_epi_2021() -> None:
    target = np.array([8.0, 15.0, 29.0, 45.0, 59.0, 75.0, 95.0, 120.0])
    age = np.array([80.0, 70.0, 66.0, 55.0, 45.0, 40.0, 30.0, 22.0])
    female = np.array([True, False, True, False, True, False, True, False])
    scr = creatinine_for_egfr(target, age, female)
    back = egfr("ckd-epi-2021", scr / UMOL_PER_MGDL, age, female)
    np.testing.assert_allclose(back, target, rtol=1e-9)


def test_cystatin_for_egfr_is_decreasing_in_egfr_and_normal_at_100() -> None:
    e = np.array([15.0, 30.0, 60.0, 100.0])
    cys = cystatin_for_egfr(e, np.full(4, 50.0), np.zeros(4, bool))
    assert np.all(np.diff(cys) < 0)
    assert 0.7 < cys[-1] < 1.0  # CKD-EPI 2012: Scys ~0.8-0.9 mg/L at eGFR 100, age 50


def test_aki_factor_rises_to_peak_then_recovers() -> None:
    h = np.array([-5.0, 0.0, 24.0, 48.0, 48.0 + 48.0, 2000.0])
    f = aki_factor(h, np.full(6, 3.0), np.full(6, 48.0), np.full(6, 48.0), np.full(6, 0.1))
    np.testing.assert_allclose(f[:4], [1.0, 1.0, 2.0, 3.0])
    assert f[4] == pytest.approx(1.1 + (3.0 - 1.1) / 2)
    assert f[5] == pytest.approx(1.1, abs=1e-6)


# -- determinism and streaming -------------------------------------------------------------------
def test_same_seed_gives_byte_identical_parquet(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    cfg = SynthConfig(patients=1200, seed=11, chunk_size=1000)
    write_store(cfg, a)
    write_store(cfg, b)
    write_store(SynthConfig(patients=1200, seed=12, chunk_size=1000), c)
    for rel in ("patients.parquet", "events/synth.parquet"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "events/synth.parquet").read_bytes() != (c / "events/synth.parquet").read_bytes()
    assert sorted(p.name for p in a.iterdir()) == [
        "events", "manifest.json", "patients.parquet", "rejects.jsonl"
    ]  # fmt: skip
    assert not _events(a).equals(_events(c))


def test_chunk_size_does_not_change_the_population(tmp_path: Path) -> None:
    small, big = tmp_path / "small", tmp_path / "big"
    write_store(SynthConfig(patients=2500, seed=5, chunk_size=1000), small)
    write_store(SynthConfig(patients=2500, seed=5, chunk_size=3000), big)
    _assert_in_store_layout(small)  # three chunks merged
    assert _events(small).equals(_events(big))
    assert _patients(small).equals(_patients(big))


def test_runs_of_a_chunk_in_store_order_null_analytes_together() -> None:
    kinds = pa.array(["condition", "condition", "lab", "lab", "lab", "vital"]).dictionary_encode()
    analytes = pa.array([None, None, "creatinine", "creatinine", "potassium", "sbp"])
    events = pa.table({"kind": kinds, "analyte": analytes})
    assert _runs(events) == (
        [("condition", None), ("lab", "creatinine"), ("lab", "potassium"), ("vital", "sbp")],
        [0, 2, 4, 5],
    )
    assert _runs(events.slice(0, 0)) == ([], [])


def test_parallel_jobs_write_the_same_events(tmp_path: Path) -> None:
    cfg = SynthConfig(patients=2100, seed=21, chunk_size=1000)
    write_store(cfg, tmp_path / "one")
    write_store(cfg, tmp_path / "two", jobs=2)
    events = "events/synth.parquet"
    assert (tmp_path / "one" / events).read_bytes() == (tmp_path / "two" / events).read_bytes()
    assert _patients(tmp_path / "one").equals(_patients(tmp_path / "two"))
    m1 = json.loads((tmp_path / "one" / "manifest.json").read_text())["datasets"]["synth"]
    m2 = json.loads((tmp_path / "two" / "manifest.json").read_text())["datasets"]["synth"]
    assert m1["by_type"] == m2["by_type"] and m1["events"] == m2["events"]


def test_first_n_patients_do_not_depend_on_population_size() -> None:
    cfg_small = SynthConfig(patients=700, seed=3)
    cfg_big = SynthConfig(patients=1500, seed=3)
    _, p_small, e_small = next(chunks(cfg_small))
    _, p_big, e_big = next(chunks(cfg_big))
    assert p_small.num_rows == 700
    assert p_big.slice(0, 700).equals(p_small)
    first = e_big.filter(pa.compute.less(e_big.column("patient_id"), "S000000700"))
    assert first.equals(e_small)


# -- schema and content --------------------------------------------------------------------------
def test_store_schema_manifest_and_conventions(store2000: Path) -> None:
    parts = sorted((store2000 / "events").glob("*.parquet"))
    assert [p.name for p in parts] == ["synth.parquet"]
    assert pq.read_schema(parts[0]).equals(EVENTS_SCHEMA)
    assert pq.read_schema(store2000 / "patients.parquet").equals(PATIENTS_SCHEMA)
    events = _events(store2000)
    manifest = json.loads((store2000 / "manifest.json").read_text())["datasets"]["synth"]
    assert manifest["events"] == events.num_rows
    assert manifest["by_type"]["Patient"]["stored"] == 2000
    con = duckdb.connect()
    open_store(store2000, con)
    one = con.execute
    assert one("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone() == (
        events.num_rows,
        events.num_rows,
    )
    assert one("SELECT count(*) FROM events WHERE start_time >= ?", [AS_OF]).fetchone() == (0,)
    assert one("SELECT count(*) FROM events WHERE end_time > ?", [AS_OF]).fetchone() == (0,)
    assert one(
        "SELECT count(*) FROM events e WHERE patient_id NOT IN (SELECT patient_id FROM patients)"
    ).fetchone() == (0,)
    # every numeric result: analyte set from its LOINC code, canonical unit, plausible value
    rows = one(
        "SELECT DISTINCT code_system, code, analyte, unit FROM events WHERE value IS NOT NULL"
    ).fetchall()
    assert len(rows) >= 28
    for system, code, analyte, unit in rows:
        assert analyte_for_code(system, code) == analyte
        assert unit == ANALYTES[analyte].canonical_unit
    for analyte, lo, hi in one(
        "SELECT analyte, min(value), max(value) FROM events WHERE value IS NOT NULL GROUP BY 1"
    ).fetchall():
        low, high = ANALYTES[analyte].plausible
        assert low <= lo and hi <= high, analyte
    _assert_in_store_layout(store2000)
    kinds = {k for (k,) in one("SELECT DISTINCT kind FROM events").fetchall()}
    assert kinds == {"lab", "vital", "output", "condition", "procedure", "medication", "encounter"}


def test_urine_output_is_hourly_with_periods_and_rrt_codes(store2000: Path) -> None:
    con = duckdb.connect()
    open_store(store2000, con)
    periods = con.execute(
        "SELECT DISTINCT kind, epoch(end_time - start_time) FROM events "
        "WHERE analyte = 'urine_volume'"
    ).fetchall()
    assert periods == [("output", 3600.0)]
    rrt = con.execute(
        "SELECT code_system, code, count(*) FROM events WHERE code IN ('90935', '5A1D70Z') "
        "GROUP BY ALL ORDER BY code"
    ).fetchall()
    assert [(s.rsplit("/", 1)[-1], c) for s, c, _ in rrt] == [
        ("ICD10", "5A1D70Z"),
        ("cpt", "90935"),
    ]


def test_rates_within_tolerance_at_2000(store2000: Path) -> None:
    con = duckdb.connect()
    open_store(store2000, con)

    def share(where: str) -> float:
        q = (
            "SELECT count(DISTINCT patient_id) / (SELECT count(*) FROM patients) FROM events "
            f"WHERE {where}"
        )
        row = con.execute(q).fetchone()
        assert row is not None
        return float(row[0])

    per_patient = con.execute(
        "SELECT count(*) / (SELECT count(*) FROM patients) FROM events"
    ).fetchone()
    assert per_patient is not None and 70 <= per_patient[0] <= 180
    assert 0.08 <= share("code LIKE 'E11%'") <= 0.22  # IDF 10.5 %, older population
    assert 0.30 <= share("code = 'I10' OR code LIKE 'I12%'") <= 0.60  # WHO 33 % at 30-79
    assert 0.07 <= share("code LIKE 'N18%'") <= 0.20  # 12 % CKD, ~80 % coded
    assert 0.02 <= share("code LIKE 'C%' AND kind = 'condition'") <= 0.10
    assert 0.02 <= share("code = 'N17.9'") <= 0.14  # AKI in 15-50 % of stays, 50 % coded
    assert 0.0 < share("code = '90935'") <= 0.03
    assert 0.0 < share("code LIKE 'Z94%'") <= 0.01
    assert 0.01 <= share("code LIKE 'B18%'") <= 0.08
    assert 0.9 <= share("analyte = 'creatinine'") <= 0.99  # NO_LABS: 3 % without any result
    # AKI: creatinine during admissions rises >= 1.5 x the admission value in 5-40 % of stays
    aki = con.execute(
        """
        WITH adm AS (SELECT patient_id, start_time s,
                       coalesce(end_time, TIMESTAMP '2026-06-01 08:00') e
                     FROM events WHERE kind = 'encounter' AND code = 'IMP'),
        c AS (SELECT a.patient_id, a.s, min(value) lo, max(value) hi FROM adm a JOIN events x
              ON x.patient_id = a.patient_id AND x.analyte = 'creatinine'
              AND x.start_time BETWEEN a.s AND a.e GROUP BY ALL)
        SELECT avg((hi >= 1.5 * lo)::INT) FROM c
        """
    ).fetchone()
    assert aki is not None and 0.05 <= aki[0] <= 0.40
    # DKD trial population exists: 24-h protein >= 3.5 g and UACR > 1000 mg/g in one patient
    dkd = con.execute(
        "SELECT count(DISTINCT patient_id) FROM events WHERE analyte = 'urine_protein_24h' "
        "AND value >= 3.5 AND patient_id IN (SELECT patient_id FROM events WHERE "
        "analyte = 'uacr' AND value > 1000)"
    ).fetchone()
    assert dkd is not None and dkd[0] >= 3


# -- FHIR ----------------------------------------------------------------------------------------
def test_fhir_export_ingests_without_rejects_to_the_same_rows(tmp_path: Path) -> None:
    cfg = SynthConfig(patients=300, seed=9)
    counts = write_fhir(cfg, tmp_path / "fhir")
    write_store(cfg, tmp_path / "store")
    summary = run_ingest("fhir", tmp_path / "fhir", tmp_path / "ingested", dataset="synth")
    assert summary.rejected == 0
    assert summary.balanced()
    assert summary.by_type["Observation"].read == counts["Observation"]
    assert summary.patients_in_store == 300
    assert _events(tmp_path / "ingested").equals(_events(tmp_path / "store"))
    assert _patients(tmp_path / "ingested").equals(_patients(tmp_path / "store"))
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    ingested = json.loads((tmp_path / "ingested" / "manifest.json").read_text())
    for rtype, c in ingested["datasets"]["synth"]["by_type"].items():
        assert manifest["datasets"]["synth"]["by_type"][rtype]["stored"] == c["stored"], rtype


# -- AKI CSVs ------------------------------------------------------------------------------------
def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_pyaki_and_aki_csvs_load_and_have_k_creatinine_values(tmp_path: Path) -> None:
    out = tmp_path / "aki"
    counts = write_pyaki(SynthConfig(patients=400, seed=4, creatinine_per_patient=50), out)
    assert counts["creatinine.csv"] == 400 * 50
    con = connect()
    loads = [
        load_creatinine(con, out / "creatinine.csv"),
        load_urine(con, out / "urine.csv"),
        load_weights(con, out / "weights.csv"),
        load_rrt(con, out / "rrt.csv"),
        load_patients(con, out / "patients.csv"),
    ]
    for load in loads:
        assert load.rejected == 0, load
        assert load.accepted == load.read > 0, load
    per = con.execute("SELECT count(*) FROM creat GROUP BY patient_id").fetchall()
    assert {n for (n,) in per} == {50}
    py = _csv(out / "pyaki" / "creatinine.csv")
    assert list(py[0]) == ["stay_id", "charttime", "creat"]
    assert len(py) == 400 * 50
    ours = _csv(out / "creatinine.csv")
    assert [r["value"] for r in ours] == [r["creat"] for r in py]
    assert list(_csv(out / "pyaki" / "urineoutput.csv")[0]) == [
        "stay_id",
        "charttime",
        "urineoutput",
    ]
    demo = _csv(out / "pyaki" / "demographics.csv")
    assert list(demo[0]) == ["stay_id", "weight"]
    urine_stays = {r["stay_id"] for r in _csv(out / "pyaki" / "urineoutput.csv")}
    assert urine_stays <= {r["stay_id"] for r in demo}
    assert list(_csv(out / "pyaki" / "rrt.csv")[0]) == ["stay_id", "charttime", "rrt_status"]


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_store_and_refuses_non_empty_out(tmp_path: Path) -> None:
    out = tmp_path / "s"
    res = CliRunner().invoke(command, ["--patients", "150", "--seed", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "patients: 150" in res.output
    assert (out / "patients.parquet").exists()
    again = CliRunner().invoke(command, ["--patients", "150", "--out", str(out)])
    assert again.exit_code != 0
    assert "not empty" in again.output


def test_cli_as_of_moves_every_history(tmp_path: Path) -> None:
    out = tmp_path / "s"
    res = CliRunner().invoke(
        command, ["--patients", "100", "--out", str(out), "--as-of", "2020-01-15T00:00+02:00"]
    )
    assert res.exit_code == 0, res.output
    con = duckdb.connect()
    open_store(out, con)
    last = con.execute("SELECT max(start_time), max(end_time) FROM events").fetchone()
    assert last is not None
    cut = dt.datetime(2020, 1, 14, 22, 0)
    assert last[0] < cut and last[1] <= cut
    assert parse_as_of("2026-06-01T08:00Z") == dt.datetime(2026, 6, 1, 8, 0)
