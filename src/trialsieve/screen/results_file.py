"""Screening results as a Parquet file, and one patient's records looked up in it.

The nightly run (``trialsieve screen --out results.parquet``) evaluates every rule for every
patient; its records already carry each criterion's verdict, reason and evidence (source
record, value, unit, time). Explaining a patient on the worklist is then a lookup, not a
re-evaluation: a lookup reads a few small row groups, found by the patient-id ranges in the
footer (milliseconds whatever the population).

Layout: rows of two kinds, in row groups of :data:`ROW_GROUP` rows that never mix them.

- A **record** per (patient, trial): ``patient_id``, ``trial_id``, ``status`` and ``verdicts``
  (one letter per criterion in protocol order, :data:`~trialsieve.screen.sql.VERDICT_LETTERS`:
  ``m`` met, ``n`` not met, ``u`` unknown, ``c`` manual check); ``i``, ``reason`` and
  ``evidence`` are NULL.
- An **item** per criterion that the patient's data decided: ``patient_id``, ``trial_id``,
  ``i`` (the criterion's 0-based position), ``reason`` and ``evidence``; ``status`` and
  ``verdicts`` are NULL. A criterion decided by its rule's default ("no record of dialysis
  (ever)", ~90 % of them) has no item: its reason is stored once, with the protocol's
  constants (criterion id, kind, text, manual instruction), in the file's key-value metadata
  under :data:`CRITERIA_KEY`.

The file is written in blocks (a range of patients, in ascending ranges): the block's records
sorted by patient and trial, then its items sorted by patient, trial and position. So the
records, read alone, are sorted by patient across the file, and so are the items; the row
groups of each kind are found by bisecting their patient-id ranges. Items are stored flat, not
as a list in each record: joining every criterion's rows to the records to build the lists
cost the 1M-patient run ~9 CPU-s more (bench/RESULTS.md). Lookups put records, items and
metadata back together: the records are those of results.jsonl. To re-evaluate a patient on
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


#: the columns with few distinct values, dictionary-encoded; the others (patient ids, verdict
#: strings, evidence values, sources and times) are only compressed: their dictionaries cost
#: more than they saved (1M patients: a block of 125k patients' items 0.65 -> 0.57 CPU-s and
#: 16.8 -> 15.9 MiB)
DICTIONARY_COLUMNS = ("trial_id", "status", "i", "reason") + tuple(
    f"evidence.list.element.{f}" for f in ("code", "unit", "note")
)

#: the columns of a record row and of an item row (each NULL in the other kind)
RECORD_COLUMNS = ("patient_id", "trial_id", "status", "verdicts")
ITEM_COLUMNS = ("patient_id", "trial_id", "i", "reason", "evidence")


class ResultsWriter:
    """Writes a results file block by block: a block is the records of a range of patients
    (sorted by patient and trial) and their items (sorted by patient, trial and position),
    the blocks in ascending patient ranges; the writer checks that order. :meth:`submit`
    encodes a block on a background thread while the caller computes the next one (at most
    one block waits). A failure removes the half-written file (the worklist must not read it)
    and is raised by the next call. As a context manager it closes the file, or removes it when
    the block fails (the rows being computed failed: the file would miss them)."""

    def __init__(
        self,
        out: Path,
        records: pa.Schema,
        items: pa.Schema,
        criteria: Mapping[str, list[dict[str, Any]]],
    ) -> None:
        self.out = Path(out)
        self.layouts = (records.remove_metadata(), items.remove_metadata())
        for what, schema, columns in zip(
            ("records", "items"), self.layouts, (RECORD_COLUMNS, ITEM_COLUMNS), strict=True
        ):
            if tuple(schema.names) != columns:
                raise ValueError(
                    f"{self.out}: {what} need the columns {', '.join(columns)}, "
                    f"not {', '.join(schema.names)}"
                )
        fields = {f.name: f for schema in self.layouts for f in schema}
        # every column nullable: each is NULL in one kind of row (Spark's schemas say which
        # columns it knows to be never NULL)
        self.schema = pa.schema(
            [fields[c].with_nullable(True) for c in dict.fromkeys(RECORD_COLUMNS + ITEM_COLUMNS)],
            metadata={CRITERIA_KEY: json.dumps(criteria)},
        )
        #: per kind (0: records, 1: items) the rows written so far and the last key
        self._written = [0, 0]
        self._last: list[str | None] = [None, None]
        # statistics on patient_id and i only: the lookups read them (i tells a row group of
        # items from one of records), nothing reads the others
        self._file = pq.ParquetWriter(
            self.out,
            self.schema,
            compression="zstd",
            use_dictionary=list(DICTIONARY_COLUMNS),
            write_statistics=["patient_id", "i"],
        )
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    @property
    def rows(self) -> int:
        """The records written so far."""
        return self._written[0]

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

    def write(self, records: pa.Table, items: pa.Table) -> None:
        """Write a block now."""
        self._wait()
        try:
            self._write(records, items)
        except BaseException:
            self._abort()
            raise

    def submit(self, records: pa.Table, items: pa.Table) -> None:
        """Write a block on the background thread (after the blocks submitted before)."""
        self._wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="trialsieve-results")
        self._pending = self._pool.submit(self._write, records, items)

    def close(self) -> int:
        """Finish the file; return the number of records."""
        try:
            self._wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown()
            self._file.close()
        return self.rows

    def _write(self, records: pa.Table, items: pa.Table) -> None:
        for kind, (rows, layout) in enumerate(zip((records, items), self.layouts, strict=True)):
            if not rows.schema.remove_metadata().equals(layout):
                what, got = ("records", "items")[kind], ", ".join(rows.schema.names)
                raise ValueError(f"{self.out}: {what} of another layout than the file's: {got}")
        for kind, rows in enumerate((records, items)):
            # a kind's rows in their own row groups: each write starts a new one
            full = pa.table(
                [rows[f.name] if f.name in rows.schema.names else pa.nulls(rows.num_rows, f.type)
                 for f in self.schema],
                schema=self.schema,
            )  # fmt: skip
            for batch in full.to_batches():
                if not batch.num_rows:
                    continue
                self._last[kind] = _check_sorted(
                    batch, self._last[kind], self.out, kind, self._written[kind]
                )
                self._file.write_batch(batch, row_group_size=ROW_GROUP)
                self._written[kind] += batch.num_rows

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


def _check_sorted(
    batch: pa.RecordBatch, last: str | None, out: Path, kind: int, offset: int
) -> str | None:
    """The batch's last (patient, trial) key; raises when the rows (``kind`` 0: records, 1:
    items) are not in that order (the lookups would miss them)."""
    if not batch.num_rows:
        return last
    keys = pc.binary_join_element_wise(batch["patient_id"], batch["trial_id"], "\x00")
    back = pc.less(keys[1:], keys[:-1])
    bad = [i + 1 for i, b in enumerate(back.to_pylist()) if b] if pc.any(back).as_py() else []
    if last is not None and keys[0].as_py() < last:
        bad.insert(0, 0)
    if bad:
        where = ("results not sorted by patient and trial at row",
                 "result items not sorted by patient and trial at item")[kind]  # fmt: skip
        raise ValueError(f"{out}: {where} {offset + bad[0]}")
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
        schema = self.file.schema_arrow
        meta = schema.metadata or {}
        if CRITERIA_KEY.encode() not in meta:
            raise ValueError(
                f"{self.path}: no {CRITERIA_KEY} metadata (not a results file written by "
                "trialsieve screen --out results.parquet)"
            )
        missing = set(RECORD_COLUMNS + ITEM_COLUMNS) - set(schema.names)
        if missing:
            raise ValueError(
                f"{self.path}: no column(s) {', '.join(sorted(missing))} (a results file of an "
                "older trialsieve: screen again)"
            )
        self.criteria = json.loads(meta[CRITERIA_KEY.encode()])
        md = self.file.metadata
        pid, pos = schema.get_field_index("patient_id"), schema.get_field_index("i")
        #: per kind (0: records, 1: items) its row groups' (index, min, max) patient ids
        self.groups: tuple[list[tuple[int, str, str]], ...] = ([], [])
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            if not rg.num_rows:
                continue
            ids, i = rg.column(pid).statistics, rg.column(pos).statistics
            self.groups[int(i.null_count < rg.num_rows)].append((g, ids.min, ids.max))
        self.mins = tuple([lo for _, lo, _ in groups] for groups in self.groups)

    def patient(self, patient_id: str, trials: list[str] | None = None) -> list[dict[str, Any]]:
        """The records of ``patient_id`` (one per trial screened), in trial order."""

        def wanted(rec: Mapping[str, Any]) -> bool:
            return not trials or rec["trial_id"] in trials

        if self.file is None:
            rows = [r for r in self._scan_jsonl(patient_id) if wanted(r)]
        else:  # only the wanted trials' records are put back together
            items: dict[str, dict[int, dict[str, Any]]] = {}
            for it in self._rows(1, patient_id, ITEM_COLUMNS):
                if wanted(it):
                    items.setdefault(it["trial_id"], {})[it["i"]] = it
            rows = [
                self._full(r, items.get(r["trial_id"], {}))
                for r in self._rows(0, patient_id, RECORD_COLUMNS)
                if wanted(r)
            ]
        return sorted(rows, key=lambda r: r["trial_id"])

    def _rows(self, kind: int, patient_id: str, columns: tuple[str, ...]) -> list[dict[str, Any]]:
        """The rows of ``kind`` (0: records, 1: items) of ``patient_id``."""
        assert self.file is not None
        groups, rows = self.groups[kind], []
        k = max(bisect.bisect_left(self.mins[kind], patient_id) - 1, 0)
        while k < len(groups) and groups[k][1] <= patient_id:
            if patient_id <= groups[k][2]:
                t = self.file.read_row_group(groups[k][0], columns=list(columns))
                rows += t.filter(pc.equal(t["patient_id"], patient_id)).to_pylist()
            k += 1
        return rows

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

    def _full(self, rec: dict[str, Any], items: Mapping[int, dict[str, Any]]) -> dict[str, Any]:
        """A record with its criteria put back from the file metadata (ids, kinds, texts,
        manual instructions, default reasons), its verdict letters and its ``items`` (position
        -> item): the results.jsonl record."""
        protocol = self.criteria.get(rec["trial_id"])
        if protocol is None:
            raise ValueError(
                f"{self.path}: no criteria of trial {rec['trial_id']} in the file metadata"
            )
        letters = rec.pop("verdicts")
        rec["criteria"] = [
            {
                "id": c["id"],
                "kind": c["kind"],
                "verdict": _VERDICTS[letters[i]],
                "text": c["text"],
                "reason": items[i]["reason"] if i in items else c["default_reason"],
                "evidence": items[i]["evidence"] if i in items else [],
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
