"""MIMIC-III / MIMIC-IV readers: MIMIC-IV layout fixture, MIMIC-III demo, ICD dots, periods."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from trialsieve.codes import (
    ICD9CM,
    ICD9PROC,
    ICD10CM,
    ICD10PCS,
    LOINC,
    MIMIC3_ITEM,
    NDC,
    code_table,
)
from trialsieve.ingest.mimic import icd_with_dot, normalize_route
from trialsieve.ingest.runner import run_ingest
from trialsieve.kidney.creatinine import UMOL_PER_MGDL
from trialsieve.store import open_store

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mimic4_mini"
M4 = "https://mimic.mit.edu/mimic4/itemid"
LB = 0.45359237
#: records per table of the MIMIC-III demo v1.4 (data lines of each CSV)
MIMIC3_COUNTS = {
    "PATIENTS": 100,
    "ADMISSIONS": 129,
    "LABEVENTS": 76074,
    "OUTPUTEVENTS": 11320,
    "INPUTEVENTS_MV": 13224,
    "DIAGNOSES_ICD": 1761,
    "PROCEDURES_ICD": 506,
    "PRESCRIPTIONS": 10398,
}


def _rows(store: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect()
    open_store(store, con)
    return con.execute(sql).fetchall()


def _rejects(store: Path) -> dict[tuple[str, str], str]:
    lines = (store / "rejects.jsonl").read_text().splitlines()
    return {(r["record_type"], r["locator"]): r["reason"] for r in map(json.loads, lines)}


@pytest.mark.parametrize(
    ("code", "version", "procedure", "expected"),
    [
        ("5849", 9, False, "584.9"),
        ("585", 9, False, "585"),
        ("V4511", 9, False, "V45.11"),
        ("V707", 9, False, "V70.7"),
        ("E8790", 9, False, "E879.0"),
        ("N179", 10, False, "N17.9"),
        ("E119", 10, False, "E11.9"),  # ICD-10 E codes have 3 characters before the dot
        ("N18", 10, False, "N18"),
        ("3995", 9, True, "39.95"),
        ("5498", 9, True, "54.98"),
        ("5A1D70Z", 10, True, "5A1D70Z"),
        ("584.9", 9, False, "584.9"),
    ],
)
def test_icd_with_dot(code: str, version: int, procedure: bool, expected: str) -> None:
    assert icd_with_dot(code, version, procedure=procedure) == expected


def test_normalize_route() -> None:
    assert normalize_route("IV") == "intravenous"
    assert normalize_route("IV DRIP") == "intravenous"
    assert normalize_route("PO") == "oral"
    assert normalize_route("DIALYS") == "dialys"
    assert normalize_route("  ") is None


def test_mimic4_fixture_rejects(tmp_path: Path) -> None:
    s = run_ingest("mimic4", FIXTURE, tmp_path)
    assert s.balanced()
    assert _rejects(tmp_path) == {
        ("admissions", "line 3"): "end before start (2161-02-28 08:00 < 2161-03-01 08:00)",
        ("labevents", "line 4"): "implausible value: creatinine: implausible value -88.4 umol/L "
        "(plausible range 5..3000 umol/L)",
        ("labevents", "line 5"): "unknown unit: creatinine: missing unit "
        "(canonical unit is umol/L)",
        ("labevents", "labevents.csv:7"): "unknown patient",
        ("labevents", "line 8"): "missing time (CHARTTIME)",
        ("outputevents", "line 6"): "missing value",
        ("chartevents", "line 5"): "implausible value: weight: implausible value 0 kg "
        "(plausible range 0.2..500 kg)",
        ("inputevents", "line 4"): "STATUSDESCRIPTION Rewritten (superseded order)",
        ("diagnoses_icd", "line 6"): "no time: HADM_ID 29999999 has no ADMITTIME in ADMISSIONS",
        ("diagnoses_icd", "line 7"): "missing ICD code",
        ("prescriptions", "line 3"): "end before start (2150-05-01 12:00 < 2150-05-02 12:00)",
    }
    # the heart-rate chart row is not a weight/BP item: filtered at the source, not read
    assert s.by_type["chartevents"].read == 3
    assert s.by_type["patients"].warnings == 2  # anchor_age 91; no anchor_age


def test_mimic4_fixture_values(tmp_path: Path) -> None:
    run_ingest("mimic4", FIXTURE, tmp_path)
    crea = _rows(
        tmp_path,
        "SELECT code_system, code, value, unit, ref_low, ref_high, orig_value, orig_unit, source "
        "FROM events WHERE analyte = 'creatinine' AND value IS NOT NULL ORDER BY start_time",
    )
    assert crea == [
        (M4, "50912", pytest.approx(1.0 * UMOL_PER_MGDL), "umol/L",
         pytest.approx(0.5 * UMOL_PER_MGDL), pytest.approx(1.2 * UMOL_PER_MGDL), "1.0", "mg/dL",
         "labevents.csv:2"),
        (M4, "50912", pytest.approx(2.1 * UMOL_PER_MGDL), "umol/L",
         pytest.approx(0.5 * UMOL_PER_MGDL), pytest.approx(1.2 * UMOL_PER_MGDL), "2.1", "mg/dL",
         "labevents.csv:3"),
    ]  # fmt: skip
    # a non-numeric result of a known analyte is kept as text, without a value
    assert _rows(tmp_path, "SELECT value, value_text FROM events WHERE source = "
                 "'labevents.csv:9'") == [(None, "ERROR")]  # fmt: skip
    # urine: each volume covers the period since the previous charting (first: ICU intime)
    urine = _rows(
        tmp_path,
        "SELECT start_time, end_time, value FROM events WHERE analyte = 'urine_volume' "
        "ORDER BY end_time",
    )
    t = dt.datetime
    assert urine == [
        (t(2150, 5, 1, 12, 30), t(2150, 5, 1, 14), 120.0),
        (t(2150, 5, 1, 14), t(2150, 5, 1, 16), 60.0),
        (t(2150, 5, 1, 16), t(2150, 5, 1, 17), 20.0),
    ]
    chest = "SELECT analyte, start_time, end_time FROM events WHERE code = '226588'"
    assert _rows(tmp_path, chest) == [(None, t(2150, 5, 1, 17), t(2150, 5, 1, 17))]
    weights = _rows(
        tmp_path,
        "SELECT code_system, code, value, start_time, source FROM events "
        "WHERE analyte = 'weight' ORDER BY source",
    )
    assert weights == [
        (M4, "226512", 80.0, t(2150, 5, 1, 13), "chartevents.csv:2"),
        (M4, "226531", pytest.approx(176 * LB), t(2150, 5, 1, 13), "chartevents.csv:3"),
        (LOINC, "29463-7", 80.5, t(2150, 5, 1, 13), "inputevents.csv:3"),  # earliest start
    ]
    codes = _rows(
        tmp_path,
        "SELECT kind, code_system, code, start_time FROM events "
        "WHERE kind IN ('condition', 'procedure') ORDER BY source",
    )
    admit = t(2150, 5, 1, 10)
    assert codes == [
        ("condition", ICD10CM, "N17.9", admit),
        ("condition", ICD9CM, "584.9", admit),
        ("condition", ICD9CM, "V45.11", admit),
        ("condition", ICD9CM, "E879.0", admit),
        ("procedure", ICD9PROC, "39.95", t(2150, 5, 3)),
        ("procedure", ICD10PCS, "5A1D70Z", t(2150, 5, 4)),
    ]
    meds = _rows(
        tmp_path,
        "SELECT code_system, code, dose_value, dose_unit, route, end_time FROM events "
        "WHERE source LIKE 'prescriptions%' ORDER BY source",
    )
    assert meds == [
        (NDC, "63323028000", 40.0, "mg", "intravenous", t(2150, 5, 3, 12)),
        ("https://mimic.mit.edu/mimic4/drug", "sodium chloride 0.9%", 1000.0, "mL",
         "intravenous", None),
    ]  # fmt: skip
    assert _rows(tmp_path, "SELECT patient_id, birth_date, sex, deceased_date FROM patients "
                 "ORDER BY patient_id") == [
        ("10000001", dt.date(2090, 1, 1), "female", None),  # anchor_year 2150 - anchor_age 60
        ("10000002", dt.date(2069, 1, 1), "male", dt.date(2161, 3, 4)),
        ("10000003", None, "male", None),
    ]  # fmt: skip


def test_gu_irrigant_is_netted_out_of_urine(tmp_path: Path) -> None:
    """Continuous bladder irrigation: urine = irrigant/urine out - irrigant in (mimic-code)."""
    src = tmp_path / "m4"
    shutil.copytree(FIXTURE, src)
    stay = "10000001,20000001,30000001,1"
    rows = [  # after the fixture's urine (last charting 18:00, without value)
        ("20:00", "227488", "1000"), ("20:00", "227489", "1300"),  # net 300
        ("22:00", "227489", "1000"), ("22:00", "227488", "1000"),  # net 0
        ("23:00", "227488", "1500"), ("23:00", "227489", "1200"),  # in > out: unknown
        ("23:30", "227488", "500"), ("23:30", "226559", "150"), ("23:30", "227489", "400"),
        ("23:45", "227488", "300"),  # no urine charted with it: not netted
    ]  # fmt: skip
    with (src / "icu" / "outputevents.csv").open("a") as f:
        for time, item, value in rows:
            f.write(f"{stay},2150-05-01 {time}:00,2150-05-01 {time}:05,{item},{value},mL\n")
    s = run_ingest("mimic4", src, tmp_path / "store")
    assert s.balanced()
    urine = _rows(
        tmp_path / "store",
        "SELECT strftime(start_time, '%H:%M'), strftime(end_time, '%H:%M'), code, value, "
        "orig_value FROM events WHERE analyte = 'urine_volume' AND end_time > '2150-05-01 18:00'"
        " ORDER BY end_time, code",
    )
    assert urine == [
        ("18:00", "20:00", "227489", 300.0, "1300"),
        ("20:00", "22:00", "227489", 0.0, "1000"),
        # 23:00 rejected, but its time still ends the period before: the gap stays a gap
        ("23:00", "23:30", "226559", 50.0, "150"),  # 500 in: 400 from 227489, 100 from here
        ("23:00", "23:30", "227489", 0.0, "400"),
    ]
    rejects = _rejects(tmp_path / "store")
    assert rejects[("outputevents", "line 12")] == (
        "net urine volume unknown: GU irrigant in exceeds the urine charted with it "
        "(1500 mL of item 227488 > 1200 mL)"
    )
    assert s.by_type["outputevents"].rejected_total == 2  # that one and the fixture's line 6
    assert s.by_type["outputevents"].warnings == 1  # the 23:45 irrigant in
    # the irrigant rows themselves are output items without analyte, stored as charted
    assert _rows(tmp_path / "store", "SELECT count(*), sum(value) FROM events "
                 "WHERE code = '227488'") == [(5, 4300.0)]  # fmt: skip


def test_mimic4_reingest_is_idempotent(tmp_path: Path) -> None:
    run_ingest("mimic4", FIXTURE, tmp_path)
    first = _rows(tmp_path, "SELECT * FROM events ORDER BY event_id")
    run_ingest("mimic4", FIXTURE, tmp_path)
    assert _rows(tmp_path, "SELECT * FROM events ORDER BY event_id") == first


@pytest.fixture(scope="module")
def mimic3_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MIMIC-III demo ingested once for this module."""
    store = tmp_path_factory.mktemp("mimic3_store")
    s = run_ingest("mimic3", shared_data / "mimic3_demo", store)
    (store / "summary.json").write_text(
        json.dumps({k: [c.read, c.stored, dict(c.rejected)] for k, c in s.by_type.items()})
    )
    return store


def test_mimic3_demo_accounts_for_every_record(mimic3_store: Path) -> None:
    by_type = json.loads((mimic3_store / "summary.json").read_text())
    assert set(by_type) == set(MIMIC3_COUNTS)
    for table, n in MIMIC3_COUNTS.items():
        read, stored, rejected = by_type[table]
        assert read == n, table
        assert read == stored + sum(rejected.values()), table
    # the demo LABEVENTS lacks SUBJECT_ID; 14,262 outpatient rows have no HADM_ID either
    reasons = by_type["LABEVENTS"][2]
    assert reasons["no SUBJECT_ID and no HADM_ID: patient cannot be attributed"] == 14262
    assert by_type["PATIENTS"][1] == 100


def test_mimic3_demo_creatinine_in_umol_per_l(mimic3_store: Path) -> None:
    tmp_path = mimic3_store
    units = _rows(
        tmp_path,
        "SELECT unit, count(*), min(value), max(value) FROM events "
        "WHERE analyte = 'creatinine' AND value IS NOT NULL GROUP BY unit",
    )
    assert len(units) == 1
    unit, n, lo, hi = units[0]
    assert unit == "umol/L" and n > 1500
    assert 10 < float(lo) < 30 and 500 < float(hi) < 3000  # type: ignore[arg-type]
    # every stored numeric creatinine equals its mg/dL source value x 88.4
    bad = _rows(
        tmp_path,
        "SELECT count(*) FROM events WHERE analyte = 'creatinine' AND value IS NOT NULL "
        f"AND abs(value - CAST(orig_value AS DOUBLE) * {UMOL_PER_MGDL}) > 1e-6",
    )
    assert bad == [(0,)]
    # creatinine follows its patient through the HADM_ID join
    per_patient = _rows(
        tmp_path,
        "SELECT count(DISTINCT patient_id) FROM events WHERE analyte = 'creatinine'",
    )
    assert int(per_patient[0][0]) > 90  # type: ignore[arg-type]


def test_mimic3_demo_codes_and_urine_periods(mimic3_store: Path) -> None:
    tmp_path = mimic3_store
    aki = _rows(
        tmp_path,
        f"SELECT count(*) FROM events WHERE code_system = '{ICD9CM}' AND code = '584.9'",
    )
    assert int(aki[0][0]) > 10  # type: ignore[arg-type]
    hd = _rows(tmp_path, f"SELECT count(*) FROM events WHERE code_system = '{ICD9PROC}' "
               "AND code = '39.95'")  # fmt: skip
    assert int(hd[0][0]) > 0  # type: ignore[arg-type]
    nodot = _rows(
        tmp_path,
        "SELECT count(*) FROM events WHERE kind = 'condition' AND length(code) > 3 "
        "AND code NOT LIKE '%.%'",
    )
    assert nodot == [(0,)]
    urine = _rows(
        tmp_path,
        "SELECT count(*), count(*) FILTER (WHERE start_time < end_time), "
        "count(*) FILTER (WHERE start_time > end_time) FROM events "
        "WHERE analyte = 'urine_volume'",
    )
    n, periods, backwards = (int(x) for x in urine[0])  # type: ignore[call-overload]
    assert n > 9000 and backwards == 0 and periods > 0.99 * n


def test_mimic3_demo_gu_irrigant_nets_as_mimic_code(shared_data: Path, mimic3_store: Path) -> None:
    """Per charting with irrigant in, the stored urine sums to mimic-code's urine_output sum."""
    con = duckdb.connect()
    urine_items = ", ".join(k for k, v in code_table(MIMIC3_ITEM).items() if v == "urine_volume")
    # mimic-code concepts/fluid_balance/urine_output.sql, restricted to irrigant chartings
    expected = con.execute(
        f"""
        SELECT ICUSTAY_ID, CHARTTIME,
          sum(CASE WHEN ITEMID = 227488 AND VALUE > 0 THEN -VALUE ELSE VALUE END) AS net
        FROM read_csv('{shared_data}/mimic3_demo/OUTPUTEVENTS.csv')
        WHERE ITEMID IN ({urine_items}, 227488) AND ISERROR IS NULL
        GROUP BY ALL HAVING count(*) FILTER (ITEMID = 227488) > 0
          AND count(*) FILTER (ITEMID <> 227488) > 0
        """
    ).fetchall()
    query = "SELECT source, value FROM events WHERE analyte = 'urine_volume'"
    stored = {int(str(src).split(":")[1]): v for src, v in _rows(mimic3_store, query)}
    urine_codes = set(urine_items.split(", "))
    lines_at: dict[tuple[int, dt.datetime], list[int]] = {}
    with (shared_data / "mimic3_demo" / "OUTPUTEVENTS.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        for r in reader:
            if r["ITEMID"] in urine_codes and not r["ISERROR"]:
                key = (int(r["ICUSTAY_ID"]), dt.datetime.fromisoformat(r["CHARTTIME"]))
                lines_at.setdefault(key, []).append(reader.line_num)
    # chartings whose urine rows are all stored or rejected for the irrigant (the demo has
    # one of 28,000 mL, implausible: rejected as such)
    netting = {int(loc.split()[1]) for (rt, loc), why in _rejects(mimic3_store).items()
               if rt == "OUTPUTEVENTS" and why.startswith("net urine volume unknown")}  # fmt: skip
    n_pos = n_neg = 0
    for stay, t, net in expected:
        lines = lines_at[(stay, t)]
        if not all(ln in stored or ln in netting for ln in lines):
            continue
        if net >= 0:
            assert sum(stored[ln] for ln in lines) == pytest.approx(net), (stay, t)
            n_pos += 1
        else:
            assert all(ln in netting for ln in lines), (stay, t)
            n_neg += 1
    assert n_pos > 60 and n_neg > 5
    # the irrigant was taken off: before, 227489 was stored as charted
    total = _rows(mimic3_store, "SELECT sum(CAST(orig_value AS DOUBLE)) - sum(value) "
                  "FROM events WHERE code = '227489'")[0][0]  # fmt: skip
    assert total > 50_000  # type: ignore[operator]


def test_mimic3_chartevents_weights_and_error_rows(shared_data: Path, tmp_path: Path) -> None:
    demo = shared_data / "mimic3_demo"
    src = tmp_path / "m3"
    src.mkdir()
    for f in ("patients_pyhealth.csv.gz", "admissions_pyhealth.csv.gz", "D_ITEMS.csv"):
        shutil.copy(demo / f, src / f)
    (src / "CHARTEVENTS.csv").write_text(
        "ROW_ID,SUBJECT_ID,HADM_ID,ICUSTAY_ID,ITEMID,CHARTTIME,STORETIME,CGID,VALUE,VALUENUM,"
        "VALUEUOM,WARNING,ERROR,RESULTSTATUS,STOPPED\n"
        "1,10006,142345,206504,763,2164-10-24 04:00:00,,1,70,70,,,0,,\n"
        "2,10006,142345,206504,3581,2164-10-24 04:00:00,,1,154,154,,,0,,\n"
        "3,10006,142345,206504,455,2164-10-24 04:00:00,,1,120,120,mmHg,,0,,\n"
        "4,10006,142345,206504,455,2164-10-24 05:00:00,,1,999,999,mmHg,,1,,\n"
        "5,10006,142345,206504,211,2164-10-24 05:00:00,,1,88,88,bpm,,0,,\n"
    )
    s = run_ingest("mimic3", src, tmp_path / "store")
    assert s.balanced()
    assert s.by_type["CHARTEVENTS"].read == 4  # heart rate (211) is not read
    assert _rejects(tmp_path / "store") == {
        ("CHARTEVENTS", "line 5"): "ERROR = 1 (charted in error)"
    }
    vitals = _rows(
        tmp_path / "store",
        "SELECT code, analyte, value, unit FROM events WHERE kind = 'vital' ORDER BY source",
    )
    assert vitals == [
        ("763", "weight", 70.0, "kg"),
        ("3581", "weight", pytest.approx(154 * LB), "kg"),
        ("455", "sbp", 120.0, "mm[Hg]"),
    ]
