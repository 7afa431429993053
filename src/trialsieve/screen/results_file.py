"""Screening results as a Parquet file, and one patient's records looked up in it.

The nightly run (``trialsieve screen --out results.parquet``) evaluates every rule for every
patient; its records already carry each criterion's verdict, reason and evidence (source
record, value, unit, time). Explaining a patient on the worklist is then a lookup, not a
re-evaluation. The file is sorted by patient and trial in row groups of :data:`ROW_GROUP` rows,
so a lookup reads one or two small row groups, found by the patient-id range in the footer
(milliseconds whatever the population).

Layout, one row per (patient, trial): ``patient_id``, ``trial_id``, ``status``, ``verdicts`` (one
letter per criterion in protocol order, :data:`~trialsieve.screen.sql.VERDICT_LETTERS`: ``m``
met, ``n`` not met, ``u`` unknown, ``c`` manual check) and ``details``, a list of
``{i, reason, evidence}`` for the criteria (0-based position ``i``) that the patient's data
decided. A criterion decided by its rule's default ("no record of dialysis (ever)", ~90 % of
them) has no item: its reason is stored once, with the protocol's constants (criterion id, kind,
text, manual instruction), in the file's key-value metadata under :data:`CRITERIA_KEY`.
Lookups put both back: the records are those of results.jsonl. To re-evaluate a patient on
fresh data, screen them alone (``trialsieve screen --patient ID``): the same rules, about a
second.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping, Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trialsieve.screen.sql import VERDICT_LETTERS, VERDICT_NAMES

#: Parquet key-value metadata: trial -> its criteria (id, kind, text, manual), in order
CRITERIA_KEY = "trialsieve.criteria"

#: verdict letter -> the verdict as records spell it
_VERDICTS = {VERDICT_LETTERS[code]: name for code, name in VERDICT_NAMES.items()}

#: rows per row group: a lookup decodes about this many records (~3 ms; 1,024 rows: ~1.7 ms,
#: and the file took 1.6x as long to write)
ROW_GROUP = 4096


def criteria_metadata(
    protocols: Sequence[Any], defaults: Mapping[str, Sequence[str]]
) -> dict[str, list[dict[str, Any]]]:
    """The :data:`CRITERIA_KEY` metadata: per trial its criteria (id, kind, text, manual) in
    order, with ``default_reason``, the reason of a patient the criterion's rule has no row for
    (``defaults``: trial -> those reasons in criterion order)."""
    return {
        p.id: [{"id": c.id, "kind": c.kind, "text": c.text, "manual": c.manual,
                "default_reason": d} for c, d in zip(p.criteria, defaults[p.id], strict=True)]
        for p in protocols
    }  # fmt: skip


def write_parquet(
    reader: pa.RecordBatchReader, out: Path, criteria: Mapping[str, list[dict[str, Any]]]
) -> int:
    """Write compact result rows (sorted by patient and trial) to ``out``; return the row
    count. ``criteria``: :func:`criteria_metadata`, stored in the file metadata."""
    with ResultsWriter(out, reader.schema, criteria) as writer:
        for batch in reader:
            writer.write(batch)
    return writer.rows


class ResultsWriter:
    """Writes a results file from compact rows arriving in (patient, trial) order, checking
    that order. :meth:`submit` encodes a table on a background thread while the caller
    computes the next one (a run in parts; at most one table waits). A failure removes the
    half-written file (the worklist must not read it) and is raised by the next call. As a
    context manager it closes the file, or removes it when the block fails (the rows being
    computed failed: the file would miss them)."""

    def __init__(
        self, out: Path, schema: pa.Schema, criteria: Mapping[str, list[dict[str, Any]]]
    ) -> None:
        self.out = Path(out)
        self.schema = schema.with_metadata({CRITERIA_KEY: json.dumps(criteria)})
        #: rows written so far
        self.rows = 0
        self._last: str | None = None
        # statistics on patient_id only: the lookups read them, nothing reads the others
        self._file = pq.ParquetWriter(
            self.out, self.schema, compression="zstd", write_statistics=["patient_id"]
        )
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()
            return
        if self._pending is not None:
            futures.wait([self._pending])  # its own failure, if any, is not the one to raise
        if self._pool is not None:
            self._pool.shutdown()
        self._abort()

    def write(self, rows: pa.RecordBatch | pa.Table) -> None:
        """Write ``rows`` now."""
        self._wait()
        try:
            self._write(rows)
        except BaseException:
            self._abort()
            raise

    def submit(self, rows: pa.Table) -> None:
        """Write ``rows`` on the background thread (after the rows submitted before)."""
        self._wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="trialsieve-results")
        self._pending = self._pool.submit(self._write, rows)

    def close(self) -> int:
        """Finish the file; return the row count."""
        try:
            self._wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown()
            self._file.close()
        return self.rows

    def _write(self, rows: pa.RecordBatch | pa.Table) -> None:
        if not rows.schema.equals(self.schema):
            raise ValueError(f"{self.out}: rows of another layout than the file's: {rows.schema}")
        for batch in rows.to_batches() if isinstance(rows, pa.Table) else [rows]:
            self._last = _check_sorted(batch, self._last, self.out, self.rows)
            self._file.write_batch(batch, row_group_size=ROW_GROUP)
            self.rows += batch.num_rows

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            pending.result()
        except BaseException:
            self._abort()
            raise

    def _abort(self) -> None:
        self._file.close()
        self.out.unlink(missing_ok=True)  # no half-written file for the worklist to read


def _check_sorted(batch: pa.RecordBatch, last: str | None, out: Path, offset: int) -> str | None:
    """The batch's last (patient, trial) key; raises when the rows are not in that order (the
    lookups would miss records)."""
    if not batch.num_rows:
        return last
    keys = pc.binary_join_element_wise(batch["patient_id"], batch["trial_id"], "\x00")
    back = pc.less(keys[1:], keys[:-1])
    bad = [i + 1 for i, b in enumerate(back.to_pylist()) if b] if pc.any(back).as_py() else []
    if last is not None and keys[0].as_py() < last:
        bad.insert(0, 0)
    if bad:
        raise ValueError(f"{out}: results not sorted by patient and trial at row {offset + bad[0]}")
    return keys[-1].as_py()


class ResultsLookup:
    """Looks patients up in a results file: Parquet (row groups found from the footer) or
    JSONL (scanned in full). Keep one per file for a session, as a worklist server would."""

    def __init__(self, results: Path) -> None:
        self.path = Path(results)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such results file")
        #: trial -> its criteria in order (:func:`criteria_metadata`)
        self.criteria: dict[str, list[dict[str, Any]]] = {}
        self.file: pq.ParquetFile | None = None
        if self.path.suffix != ".parquet":
            return
        self.file = pq.ParquetFile(self.path)
        meta = self.file.schema_arrow.metadata or {}
        if CRITERIA_KEY.encode() not in meta:
            raise ValueError(
                f"{self.path}: no {CRITERIA_KEY} metadata (not a results file written by "
                "trialsieve screen --out results.parquet)"
            )
        missing = {"patient_id", "trial_id", "status", "verdicts", "details"} - set(
            self.file.schema_arrow.names
        )
        if missing:
            raise ValueError(
                f"{self.path}: no column(s) {', '.join(sorted(missing))} (a results file of an "
                "older trialsieve, with one criteria list per record: screen again)"
            )
        self.criteria = json.loads(meta[CRITERIA_KEY.encode()])
        md = self.file.metadata
        col = self.file.schema_arrow.get_field_index("patient_id")
        self.bounds = []
        for i in range(md.num_row_groups):
            stats = md.row_group(i).column(col).statistics
            self.bounds.append((stats.min, stats.max))
        self.mins = [lo for lo, _ in self.bounds]

    def patient(self, patient_id: str, trials: list[str] | None = None) -> list[dict[str, Any]]:
        """The records of ``patient_id`` (one per trial screened), in trial order."""
        if self.file is None:
            rows = self._scan_jsonl(patient_id)
        else:
            rows = []
            i = max(bisect.bisect_left(self.mins, patient_id) - 1, 0)
            while i < len(self.bounds) and self.bounds[i][0] <= patient_id:
                if patient_id <= self.bounds[i][1]:
                    t = self.file.read_row_group(i)
                    rows += t.filter(pc.equal(t["patient_id"], patient_id)).to_pylist()
                i += 1
        rows = [r for r in rows if not trials or r["trial_id"] in trials]
        if self.file is not None:  # compact records: the criteria put back
            rows = [self._full(r) for r in rows]
        return sorted(rows, key=lambda r: r["trial_id"])

    def _scan_jsonl(self, patient_id: str) -> list[dict[str, Any]]:
        import orjson

        out = []
        with self.path.open("rb") as f:
            for line in f:
                if patient_id.encode() in line:
                    rec = orjson.loads(line)
                    if rec["patient_id"] == patient_id:
                        out.append(rec)
        return out

    def _full(self, rec: dict[str, Any]) -> dict[str, Any]:
        """A compact record with its criteria put back from the file metadata (ids, kinds,
        texts, manual instructions, default reasons) and its verdict letters and details: the
        results.jsonl record."""
        protocol = self.criteria.get(rec["trial_id"])
        if protocol is None:
            raise ValueError(
                f"{self.path}: no criteria of trial {rec['trial_id']} in the file metadata"
            )
        details = {d["i"]: d for d in rec.pop("details") or []}
        letters = rec.pop("verdicts")
        rec["criteria"] = [
            {
                "id": c["id"],
                "kind": c["kind"],
                "verdict": _VERDICTS[letters[i]],
                "text": c["text"],
                "reason": details[i]["reason"] if i in details else c["default_reason"],
                "evidence": details[i]["evidence"] if i in details else [],
                "manual": c["manual"],
            }
            for i, c in enumerate(protocol)
        ]
        return rec


def format_record(rec: dict[str, Any]) -> str:
    """A coordinator-readable explanation of one (patient, trial) record."""
    lines = [f"{rec['patient_id']}  {rec['trial_id']}  {rec['status']}"]
    for c in rec["criteria"]:
        lines.append(f"  {c['id']:<8} {c['kind']:<9} {c['verdict']:<8} {c['reason'] or ''}")
        for ev in c["evidence"] or []:
            value = "" if ev["value"] is None else f"{ev['value']:g} {ev['unit'] or ''}".strip()
            note = f"  ({ev['note']})" if ev.get("note") else ""
            where = f"{ev['time'] or ''}  {ev['source'] or ''}  {ev['code'] or ''}"
            lines.append(f"{'':29}{where}  {value}{note}")
    return "\n".join(lines)
