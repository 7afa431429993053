"""The simple CSV layout reader."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from trialsieve.ingest.runner import run_ingest
from trialsieve.ingest.sink import IngestError
from trialsieve.store import open_store

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ingest_csv"


def _rows(store: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect()
    open_store(store, con)
    return con.execute(sql).fetchall()


def test_csv_fixture(tmp_path: Path) -> None:
    creat = pytest.importorskip("trialsieve.kidney.creatinine")
    s = run_ingest("csv", FIXTURE, tmp_path)
    assert s.balanced()
    assert s.dataset == "ingest_csv"
    rejects = {
        r["locator"]: r["reason"]
        for r in map(json.loads, (tmp_path / "rejects.jsonl").read_text().splitlines())
    }
    assert rejects == {
        "line 4": "impossible date in birth_date: '1970-02-30'",
        "line 6": "not a number in value: 'abc'",
        "line 7": "missing time (start_time)",
        "events.csv:8": "unknown patient",
    }
    assert s.by_type["patients.csv"].warnings == 1  # c2 has no birth date
    crea = _rows(tmp_path, "SELECT value, unit, start_time FROM events WHERE analyte='creatinine'")
    assert crea == [
        (pytest.approx(1.5 * creat.UMOL_PER_MGDL), "umol/L", dt.datetime(2024, 1, 10, 7))
    ]
    assert _rows(tmp_path, "SELECT value FROM events WHERE analyte='hba1c'") == [
        (pytest.approx(7.0, abs=0.01),)
    ]
    uo = _rows(
        tmp_path, "SELECT kind, value, unit, end_time FROM events WHERE analyte='urine_volume'"
    )
    assert uo == [("output", 300.0, "mL", dt.datetime(2024, 1, 12, 6))]
    med = _rows(
        tmp_path, "SELECT code_system, dose_value, route FROM events WHERE kind='medication'"
    )
    assert med == [("http://www.whocc.no/atc", 500.0, "oral")]
    cond = _rows(tmp_path, "SELECT code_system, code FROM events WHERE kind='condition'")
    assert cond == [("http://hl7.org/fhir/sid/icd-10-cm", "E11.9")]


def test_record_id_makes_updates_stable(tmp_path: Path) -> None:
    pytest.importorskip("trialsieve.kidney.creatinine")
    src = tmp_path / "src"
    shutil.copytree(FIXTURE, src)
    run_ingest("csv", src, tmp_path / "store")
    n1 = _rows(tmp_path / "store", "SELECT count(*) FROM events")
    # newer export: a row inserted at the top shifts every line; record ids keep rows unique
    lines = (src / "events.csv").read_text().splitlines()
    lines.insert(1, "c1,lab,loinc,2823-3,Potassium,2024-02-01,,4.4,mmol/L,,,,,,,final,r9")
    (src / "events.csv").write_text("\n".join(lines) + "\n")
    run_ingest("csv", src, tmp_path / "store")
    n2 = _rows(tmp_path / "store", "SELECT count(*), count(DISTINCT event_id) FROM events")
    assert n2 == [(n1[0][0] + 1, n1[0][0] + 1)]


def test_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "patients.csv").write_text("patient_id,sex\np1,F\n")
    with pytest.raises(IngestError, match=r"patients.csv: line 1: missing column\(s\) birth_date"):
        run_ingest("csv", tmp_path, tmp_path / "store")
