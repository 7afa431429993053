"""StoreWriter / open_store: accounting, unknown patients, idempotent re-ingest, updates."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from trialsieve.ingest.sink import IngestError, IngestSink
from trialsieve.store import EVENTS_SCHEMA, PATIENTS_SCHEMA, StoreWriter, open_store


def _patients(*ids: str) -> pa.Table:
    return pa.table(
        {
            "patient_id": list(ids),
            "birth_date": [dt.date(1960, 1, 1)] * len(ids),
            "sex": ["female"] * len(ids),
            "source": [f"Patient/{i}" for i in ids],
        }
    )


def _events(rows: list[tuple[str, str, float]]) -> pa.Table:
    """rows of (patient_id, source, value) creatinine results."""
    return pa.table(
        {
            "patient_id": [r[0] for r in rows],
            "kind": ["lab"] * len(rows),
            "analyte": ["creatinine"] * len(rows),
            "code_system": ["http://loinc.org"] * len(rows),
            "code": ["2160-0"] * len(rows),
            "start_time": pa.array([dt.datetime(2024, 1, 1)] * len(rows), pa.timestamp("us")),
            "value": [r[2] for r in rows],
            "unit": ["umol/L"] * len(rows),
            "source": [r[1] for r in rows],
        }
    )


def _ingest(store: Path, pids: list[str], rows: list[tuple[str, str, float]], **kw: bool):
    with StoreWriter(store, "ds1", **kw) as w:
        w.count_read("Patient", len(pids))
        w.patients(_patients(*pids))
        w.count_read("Observation", len({r[1] for r in rows}))
        w.events(_events(rows), "Observation")
    assert w.summary is not None
    return w.summary


def _query(store: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect()
    open_store(store, con)
    return con.execute(sql).fetchall()


def test_writer_is_an_ingest_sink(tmp_path: Path) -> None:
    assert isinstance(StoreWriter(tmp_path, "x"), IngestSink)


def test_schema_and_accounting(tmp_path: Path) -> None:
    s = _ingest(tmp_path, ["p1"], [("p1", "Observation/a", 80.0), ("p2", "Observation/b", 90.0)])
    assert s.balanced()
    obs = s.by_type["Observation"]
    assert (obs.read, obs.stored, dict(obs.rejected)) == (2, 1, {"unknown patient": 1})
    rejects = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert rejects == [
        {"dataset": "ds1", "record_type": "Observation", "file": "",
         "locator": "Observation/b", "reason": "unknown patient"}
    ]  # fmt: skip
    con = duckdb.connect()
    open_store(tmp_path, con)
    cols = [r[0] for r in con.execute("DESCRIBE events").fetchall()]
    assert cols == EVENTS_SCHEMA.names
    assert [r[0] for r in con.execute("DESCRIBE patients").fetchall()] == PATIENTS_SCHEMA.names
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["datasets"]["ds1"]["stored"] == 2


def test_reingest_is_idempotent(tmp_path: Path) -> None:
    rows = [("p1", "Observation/a", 80.0), ("p1", "Observation/b", 90.0)]
    _ingest(tmp_path, ["p1"], rows)
    first = _query(tmp_path, "SELECT * FROM events ORDER BY event_id")
    _ingest(tmp_path, ["p1"], rows)
    assert _query(tmp_path, "SELECT * FROM events ORDER BY event_id") == first
    assert _query(tmp_path, "SELECT count(*) FROM patients") == [(1,)]


def test_newer_export_updates_without_duplicates(tmp_path: Path) -> None:
    _ingest(tmp_path, ["p1"], [("p1", "Observation/a", 80.0), ("p1", "Observation/b", 90.0)])
    # newer export: b corrected, c new, a absent (delta export): a kept, b updated, c added
    _ingest(tmp_path, ["p1", "p2"], [("p1", "Observation/b", 95.0), ("p2", "Observation/c", 70.0)])
    got = _query(tmp_path, "SELECT source, value FROM events ORDER BY source")
    assert got == [("Observation/a", 80.0), ("Observation/b", 95.0), ("Observation/c", 70.0)]
    assert _query(tmp_path, "SELECT count(*), count(DISTINCT event_id) FROM events") == [(3, 3)]


def test_patient_known_from_earlier_ingest_is_accepted(tmp_path: Path) -> None:
    _ingest(tmp_path, ["p1"], [])
    s = _ingest(tmp_path, [], [("p1", "Observation/z", 60.0)])
    assert s.by_type["Observation"].stored == 1


def test_panel_rows_count_as_one_record(tmp_path: Path) -> None:
    s = _ingest(tmp_path, ["p1"], [("p1", "Observation/bp", 120.0), ("p1", "Observation/bp", 80.0)])
    assert s.by_type["Observation"].stored == 1


def test_strict_fails_on_first_reject(tmp_path: Path) -> None:
    w = StoreWriter(tmp_path, "ds1", strict=True)
    with pytest.raises(IngestError, match="f.ndjson: line 3"):
        w.reject("Observation", "f.ndjson", "line 3", "malformed JSON")


def test_bad_dataset_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dataset name"):
        StoreWriter(tmp_path, "../evil")


def test_empty_store_views(tmp_path: Path) -> None:
    assert _query(tmp_path, "SELECT count(*) FROM events") == [(0,)]


def test_last_duplicate_within_a_run_wins(tmp_path: Path) -> None:
    _ingest(tmp_path, ["p1", "p1"], [("p1", "Observation/a", 80.0), ("p1", "Observation/a", 81.0)])
    assert _query(tmp_path, "SELECT value FROM events") == [(81.0,)]
    assert _query(tmp_path, "SELECT count(*) FROM patients") == [(1,)]


def test_rows_already_in_store_order_give_the_same_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sorted input (no reordering needed) and shuffled input write the same events."""
    import pyarrow.parquet as pq

    from trialsieve.store import writer

    rows = [("p1", f"Observation/{c}", float(i)) for i, c in enumerate("abcdef")]
    stores = []
    for name, order in (("sorted", rows), ("shuffled", rows[3:] + rows[::-1][3:])):
        first = _ingest(tmp_path / name, ["p1"], order)
        # event ids sort the rows (same patient and time): find the store order, ingest it
        stored = pq.read_table(tmp_path / name / "events" / "ds1.parquet")
        by_source = {r[1]: r for r in order}
        in_store = [by_source[s] for s in stored.column("source").to_pylist()]
        with monkeypatch.context() as m:  # rows in store order are not moved
            m.setattr(writer, "_take", None)
            second = _ingest(tmp_path / f"{name}2", ["p1"], in_store)
        n_obs = [s.by_type["Observation"].stored for s in (first, second)]
        assert n_obs == [len(rows), len(rows)]
        stores.append(pq.read_table(tmp_path / f"{name}2" / "events" / "ds1.parquet"))
        assert stores[-1].equals(stored)
    assert stores[0].equals(stores[1])


def test_identity_order_check() -> None:
    from trialsieve.store.writer import _is_identity

    assert _is_identity(pa.array([], pa.int64()))
    assert _is_identity(pa.array([0, 1, 2], pa.int64()))
    assert not _is_identity(pa.array([1, 0, 2], pa.int64()))
    assert not _is_identity(pa.array([1, 2, 3], pa.int64()))


def test_events_files_are_in_the_screening_layout(tmp_path: Path) -> None:
    """kind, analyte, patient, time, event id (NULLs last), row groups of EVENTS_ROW_GROUP, and
    the order declared in the file, after a first ingest and after a merge with it."""
    import pyarrow.parquet as pq

    from trialsieve.ingest.runner import run_ingest
    from trialsieve.store.reader import in_screening_order
    from trialsieve.store.schema import EVENTS_ORDER, EVENTS_ROW_GROUP

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "mimic4_mini"
    for _ in range(2):  # the second run merges with the rows already stored
        run_ingest("mimic4", fixture, tmp_path)
        path = tmp_path / "events" / "mimic4_mini.parquet"
        cols = pq.read_table(path, columns=list(EVENTS_ORDER)).to_pydict().values()
        rows = list(zip(*cols, strict=True))
        assert len({r[0] for r in rows}) >= 5 and any(r[1] is None for r in rows)
        assert rows == sorted(rows, key=lambda r: tuple((x is None, x or "") for x in r))
        assert pq.ParquetFile(path).metadata.row_group(0).num_rows <= EVENTS_ROW_GROUP
        assert in_screening_order(tmp_path)
