"""Screening a store in parts by patient-id range gives the run of the whole store (issue 5:
stores larger than memory are screened part by part, the verdicts read as one run)."""

from __future__ import annotations

import gc
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from trialsieve.demo.cohort import DEMO_AS_OF
from trialsieve.protocols.loader import load_bundled
from trialsieve.screen import backend as backend_mod
from trialsieve.screen import engine as engine_mod
from trialsieve.screen import results_file
from trialsieve.screen.backend import ALL_PATIENTS, DuckDBBackend, id_ranges, range_sql
from trialsieve.screen.engine import StoreChangedError, screen_store
from trialsieve.screen.results_file import ResultsLookup, ResultsWriter
from trialsieve.store.reader import in_screening_order
from trialsieve.synth.generator import SynthConfig
from trialsieve.synth.writers import write_store


def test_id_ranges_cover_every_id_once() -> None:
    backend = DuckDBBackend()

    def ranges(ids: list[str], parts: int) -> list[tuple[str | None, str | None]]:
        rows = " UNION ALL ".join(f"SELECT '{i}' AS patient_id" for i in ids)
        backend.create("ids", rows or "SELECT 'x' AS patient_id WHERE FALSE")
        return id_ranges(backend, "ids", parts)

    # the ids in another order than sorted: the database sorts them
    assert ranges([f"p{i:03d}" for i in (9, 3, 0, 6, 1, 2, 4, 5, 7, 8)], 3) == [
        (None, "p003"), ("p003", "p006"), ("p006", None)
    ]  # fmt: skip
    assert ranges(["a", "b", "a", "a"], 4) == [(None, "b"), ("b", None)]
    assert ranges(["a", "b"], 1) == [ALL_PATIENTS]
    # about 4 ids per range: 10 ids in 3 ranges
    ranges([f"p{i:03d}" for i in range(10)], 1)
    assert id_ranges(backend, "ids", per_range=4) == [
        (None, "p003"), ("p003", "p006"), ("p006", None)
    ]  # fmt: skip
    assert ranges([], 5) == [ALL_PATIENTS]
    assert range_sql(ALL_PATIENTS) == "TRUE"
    assert range_sql(("a", None)) == "patient_id >= 'a'"
    assert range_sql((None, "b'c"), "x") == "x < 'b''c'"


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("parts") / "synth"
    write_store(SynthConfig(patients=1_500, seed=7, as_of=DEMO_AS_OF), out)
    return out


def _run(store: Path, out: Path) -> tuple[list[str], dict]:
    run = screen_store(store, load_bundled(), DEMO_AS_OF)
    run.write(out)
    lines = out.read_text("utf-8").splitlines() if out.suffix == ".jsonl" else []
    return lines, run.funnels


def test_parts_give_the_whole_run(
    synth_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole, whole_funnels = _run(synth_store, tmp_path / "whole.jsonl")
    n_events = (
        DuckDBBackend()
        .con.execute(f"SELECT count(*) FROM read_parquet('{synth_store}/events/*.parquet')")
        .fetchall()[0][0]
    )
    monkeypatch.setattr(backend_mod, "PART_EVENTS_READ", n_events // 4)
    assert len(DuckDBBackend().open_store(synth_store)) >= 4
    parts, parts_funnels = _run(synth_store, tmp_path / "parts.jsonl")
    assert len(whole) == 4 * 1_500
    assert parts == whole  # same records, same order (trial, patient)
    assert parts_funnels == whole_funnels
    # in the file, records and items are each sorted by patient and trial across the parts too
    _run(synth_store, tmp_path / "parts.parquet")
    keys = pq.read_table(tmp_path / "parts.parquet", columns=["patient_id", "trial_id", "i"])
    rows = keys.to_pylist()
    records = [(r["patient_id"], r["trial_id"]) for r in rows if r["i"] is None]
    items = [(r["patient_id"], r["trial_id"], r["i"]) for r in rows if r["i"] is not None]
    assert records == sorted(records) and items == sorted(items)
    assert len(records) == len(whole) and items
    # ... and holds the same records (stored part by part, default reasons in the metadata)
    lookup = ResultsLookup(tmp_path / "parts.parquet")
    by_patient: dict[str, list[dict]] = {}
    for line in whole:
        rec = json.loads(line)
        by_patient.setdefault(rec["patient_id"], []).append(rec)
    for pid, recs in by_patient.items():
        assert lookup.patient(pid) == sorted(recs, key=lambda r: r["trial_id"])
    statuses = {json.loads(line)["status"] for line in whole}
    assert {"ineligible", "needs_data"} <= statuses
    # the file was written while the parts ran: each output is that file, and the run reads it
    run = screen_store(synth_store, load_bundled(), DEMO_AS_OF)
    assert run.spool is not None and run.spool_dir is not None
    spool_dir = Path(run.spool_dir.name)
    assert run.write(tmp_path / "a.parquet") == run.write(tmp_path / "b.parquet") == len(whole)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "parts.parquet").read_bytes()
    assert (tmp_path / "b.parquet").read_bytes() == (tmp_path / "parts.parquet").read_bytes()
    assert [json.dumps(r, sort_keys=True) for r in run.records] == [
        json.dumps(json.loads(line), sort_keys=True) for line in whole
    ]
    del run
    gc.collect()
    assert not spool_dir.exists()  # removed with the run; the outputs stay
    assert ResultsLookup(tmp_path / "a.parquet").patient(next(iter(by_patient)))


def test_a_store_in_the_older_patient_order_screens_the_same(
    synth_store: Path, tmp_path: Path
) -> None:
    """Stores written before the screening layout (sorted by patient, no sorting metadata)
    are clustered when loaded: same records and funnels as the store in the layout."""
    assert in_screening_order(synth_store)
    old = tmp_path / "old"
    shutil.copytree(synth_store, old)
    for f in (old / "events").glob("*.parquet"):
        t = pq.read_table(f)
        t = t.sort_by([("patient_id", "ascending"), ("start_time", "ascending"),
                       ("event_id", "ascending")])  # fmt: skip
        pq.write_table(t, f, compression="zstd")  # no sorting columns: unknown order
    assert not in_screening_order(old)
    new_lines, new_funnels = _run(synth_store, tmp_path / "new.jsonl")
    old_lines, old_funnels = _run(old, tmp_path / "old.jsonl")
    assert old_lines == new_lines and old_funnels == new_funnels


def _block(ids: list[str], trial: str = "A") -> tuple[pa.Table, pa.Table]:
    """A block of records of ``ids`` in ``trial``, each with one item."""
    records = pa.table(
        {
            "patient_id": ids,
            "trial_id": [trial] * len(ids),
            "status": ["needs_data"] * len(ids),
            "verdicts": ["u"] * len(ids),
        }
    )
    evidence = pa.array([[]] * len(ids), pa.list_(pa.struct([("source", pa.string())])))
    items = pa.table(
        {
            "patient_id": ids,
            "trial_id": [trial] * len(ids),
            "i": pa.array([0] * len(ids), pa.int32()),
            "reason": ["r"] * len(ids),
            "evidence": evidence,
        }
    )
    return records, items


def test_unsorted_records_are_refused(tmp_path: Path) -> None:
    """results.parquet is found by patient-id ranges: rows out of order would hide records."""
    ok = _block(["p1", "p2", "p3"])
    with ResultsWriter(tmp_path / "ok.parquet", *(t.schema for t in ok), {}) as writer:
        writer.write(*_block(["p1", "p2"]))
        writer.write(*_block(["p3"]))
    assert writer.rows == 3
    got = pq.read_table(tmp_path / "ok.parquet")
    assert got.column("i").to_pylist() == [None, None, 0, 0, None, 0]
    records, items = _block(["p2", "p10"])
    for bad, where in (((records, _block(["p1", "p2"])[1]), "row 1"),
                       ((_block(["p1", "p2"])[0], items), "item 1")):  # fmt: skip
        with pytest.raises(ValueError, match=rf"bad.parquet: .*not sorted .* at {where}"):
            with ResultsWriter(tmp_path / "bad.parquet", *(t.schema for t in ok), {}) as w:
                w.write(*bad)
        assert not (tmp_path / "bad.parquet").exists()
    # a later block's rows must follow the earlier blocks' rows of their kind
    with pytest.raises(ValueError, match=r"bad.parquet: results not sorted .* at row 2"):
        with ResultsWriter(tmp_path / "bad.parquet", *(t.schema for t in ok), {}) as w:
            w.write(*_block(["p2", "p3"]))
            w.write(*_block(["p1"]))
    assert not (tmp_path / "bad.parquet").exists()


def test_results_written_in_the_background_are_checked_too(tmp_path: Path) -> None:
    """A run in parts hands each part's records to a background writer: a part out of order
    fails the run (at the next call) and leaves no file behind."""
    first, second = _block(["p1", "p2"]), _block(["p3"])
    schemas = [t.schema for t in first]
    ok = ResultsWriter(tmp_path / "ok.parquet", *schemas, {})
    ok.submit(*first)
    ok.submit(*second)
    assert ok.close() == 3
    assert ResultsLookup(tmp_path / "ok.parquet").file is not None
    bad = ResultsWriter(tmp_path / "bad.parquet", *schemas, {})
    bad.submit(*second)
    bad.submit(*first)
    with pytest.raises(ValueError, match=r"bad.parquet: results not sorted .* at row 1"):
        bad.close()
    assert not (tmp_path / "bad.parquet").exists()
    # the rows being computed failed: the file would miss them, so none is left
    with pytest.raises(RuntimeError, match="query failed"):
        with ResultsWriter(tmp_path / "partial.parquet", *schemas, {}) as partial:
            partial.submit(*first)
            raise RuntimeError("query failed")
    assert not (tmp_path / "partial.parquet").exists()
    other = ResultsWriter(tmp_path / "other.parquet", *schemas, {})
    with pytest.raises(ValueError, match="items of another layout"):
        other.write(first[0], first[1].select(["patient_id"]))
    assert not (tmp_path / "other.parquet").exists()


def test_one_part_writes_its_records_range_by_range(
    synth_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-part run assembles results.parquet in patient-id ranges (each encoded while the
    next is assembled): the same records and items, each kind in the same order, as in one
    range."""
    run = screen_store(synth_store, load_bundled(), DEMO_AS_OF)
    assert run.spool is None
    whole = run.write(tmp_path / "whole.parquet")
    monkeypatch.setattr(engine_mod, "RECORDS_PER_RANGE", 200)
    assert run.write(tmp_path / "ranges.parquet") == whole == 4 * 1_500
    one, many = (pq.ParquetFile(tmp_path / f) for f in ("whole.parquet", "ranges.parquet"))
    assert many.metadata.num_row_groups > one.metadata.num_row_groups
    whole_rows, range_rows = one.read(), many.read()
    for kind in (pc.is_null, pc.is_valid):  # records, then items
        assert range_rows.filter(kind(range_rows["i"])).equals(
            whole_rows.filter(kind(whole_rows["i"]))
        )
    assert many.schema_arrow.metadata == one.schema_arrow.metadata


def test_a_store_written_during_the_screening_fails_it(synth_store: Path, tmp_path: Path) -> None:
    """The rules read the store's files all along the run: an ingest writing them meanwhile
    could give records from two versions, so the run stops and names the file."""
    store = tmp_path / "store"
    shutil.copytree(synth_store, store)
    victim = sorted((store / "events").glob("*.parquet"))[-1]

    class Ingesting(DuckDBBackend):
        def load_events(self, part: tuple[str | None, str | None]) -> None:
            super().load_events(part)
            os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))

    with pytest.raises(
        StoreChangedError, match=rf"changed while it was screened \(events/{victim.name}\)"
    ):
        screen_store(store, load_bundled(), DEMO_AS_OF, backend=Ingesting())
    # untouched, the same store screens
    assert screen_store(store, load_bundled(), DEMO_AS_OF).funnels


def test_lookups_across_row_group_boundaries(
    synth_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With row groups of 3 rows, a patient's records and items lie across several row groups
    of each kind (and blocks of 200 patients add block boundaries): every lookup still gives the
    patient's records of results.jsonl."""
    monkeypatch.setattr(results_file, "ROW_GROUP", 3)
    monkeypatch.setattr(engine_mod, "RECORDS_PER_RANGE", 200)
    run = screen_store(synth_store, load_bundled(), DEMO_AS_OF)
    run.write(tmp_path / "small.parquet")
    lookup = ResultsLookup(tmp_path / "small.parquet")
    assert min(len(g) for g in lookup.groups) > 1_000
    by_patient: dict[str, list[dict]] = {}
    for rec in run.records:
        by_patient.setdefault(rec["patient_id"], []).append(rec)
    for pid, recs in by_patient.items():
        assert lookup.patient(pid) == sorted(recs, key=lambda r: r["trial_id"])
    assert lookup.patient("S0") == []
