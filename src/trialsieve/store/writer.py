"""StoreWriter: the IngestSink that writes the canonical store (layout in docs/STORE.md).

Readers push Arrow batches; ``close()`` checks patients, computes stable event ids, merges the new
rows with what the store already holds for the dataset (idempotent re-ingest; a newer export
updates rows by event_id / patient_id without duplicates) and writes Parquet, the manifest and the
rejects file. Nothing is lost silently: every record read is stored or rejected with a reason.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from trialsieve.ingest.sink import IngestError
from trialsieve.store.schema import (
    EVENTS_ORDER,
    EVENTS_SCHEMA,
    PATIENTS_SCHEMA,
    events_parquet_options,
)

log = logging.getLogger(__name__)

_DATASET_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
#: optional event columns a reader may add so that an unknown-patient reject names the file and
#: the line/entry of its record (not stored in the events table)
ORIGIN_COLUMNS = ("origin_file", "origin_locator")


@dataclass
class TypeCounts:
    """Counts for one record type."""

    read: int = 0
    stored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    warnings: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


@dataclass
class IngestSummary:
    """What one ingest run did: read / stored / rejected by reason, per record type."""

    dataset: str
    store_dir: Path
    by_type: dict[str, TypeCounts]
    patients_in_store: int = 0
    events_in_dataset: int = 0

    @property
    def read(self) -> int:
        return sum(c.read for c in self.by_type.values())

    @property
    def stored(self) -> int:
        return sum(c.stored for c in self.by_type.values())

    @property
    def rejected(self) -> int:
        return sum(c.rejected_total for c in self.by_type.values())

    def balanced(self) -> bool:
        """True when every record read was stored or rejected, for every record type."""
        return all(c.read == c.stored + c.rejected_total for c in self.by_type.values())

    def table(self) -> str:
        """The plain-text summary table printed at the end of a run."""
        rows = [("record type", "read", "stored", "rejected", "warnings", "rejects by reason")]
        for name in sorted(self.by_type):
            c = self.by_type[name]
            reasons = "; ".join(f"{r}: {n}" for r, n in c.rejected.most_common())
            rows.append(
                (name, str(c.read), str(c.stored), str(c.rejected_total), str(c.warnings), reasons)
            )
        rows.append(("TOTAL", str(self.read), str(self.stored), str(self.rejected), "", ""))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = []
        for r in rows:
            cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, 5)]
            lines.append("  ".join(cells + [r[5]]).rstrip())
        return "\n".join(lines)


def _reason_key(reason: str) -> str:
    """Group reasons for the summary: the text before the first ':' (analyte or cause)."""
    return reason.split(" (", 1)[0][:120]


def _conform(batch: pa.Table, schema: pa.Schema, dataset: str) -> pa.Table:
    """Reorder/cast ``batch`` to ``schema``, filling missing columns with nulls; set dataset."""
    n = batch.num_rows
    cols = []
    for f in schema:
        if f.name == "dataset":
            cols.append(pa.repeat(pa.scalar(dataset, pa.string()), n))
        elif f.name in batch.column_names:
            col = batch.column(f.name)
            cols.append(col if col.type == f.type else col.cast(f.type))
        else:
            cols.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


#: a string column with fewer distinct values than 1 in this many (in a sample) is taken
#: through its dictionary: gathering small integer codes and then looking the strings up in a
#: small dictionary is several times cheaper than gathering the strings themselves
_DICT_TAKE_RATIO = 8
_DICT_TAKE_SAMPLE = 4096


def _take(col: pa.ChunkedArray, indices: pa.Array) -> pa.Array:
    """``col.take(indices)`` as one array; same values, cheaper for repetitive strings."""
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if pa.types.is_string(arr.type) and len(indices) >= _DICT_TAKE_SAMPLE:
        sample = arr.slice(0, _DICT_TAKE_SAMPLE)
        if len(sample.unique()) * _DICT_TAKE_RATIO < len(sample):
            taken = arr.dictionary_encode().take(indices)
            return taken.dictionary.take(taken.indices)
    return arr.take(indices)


#: columns gathered at once when the rows are put in store order
_TAKE_THREADS = 2


def _is_identity(order: pa.Array) -> bool:
    """True when ``order`` is 0, 1, 2, ... (taking it would give the rows unchanged)."""
    idx = order.to_numpy(zero_copy_only=False)
    return bool(idx[0] == 0 and (np.diff(idx) == 1).all()) if len(idx) else True


def _atomic_write_parquet(table: pa.Table, path: Path, **options: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(table, tmp, compression="zstd", **options)
    os.replace(tmp, path)


class StoreWriter:
    """IngestSink writing one dataset into a store directory; use as a context manager."""

    def __init__(self, store_dir: Path, dataset: str, *, strict: bool = False) -> None:
        if not _DATASET_RE.match(dataset):
            raise ValueError(f"dataset name {dataset!r}: use letters, digits, '_', '-', '.'")
        self.store_dir = Path(store_dir)
        self.dataset = dataset
        self.strict = strict
        self._counts: dict[str, TypeCounts] = defaultdict(TypeCounts)
        self._patients: list[pa.Table] = []
        self._patient_types: list[str] = []
        self._events: list[pa.Table] = []
        self._event_types: list[str] = []
        self._rejects: list[dict[str, str]] = []
        self._closed = False
        self.summary: IngestSummary | None = None
        self.source_path: str | None = None
        self.source_format: str | None = None

    # -- IngestSink -----------------------------------------------------------------------
    def count_read(self, record_type: str, n: int = 1) -> None:
        self._counts[record_type].read += n

    def patients(self, batch: pa.Table, record_type: str = "Patient") -> None:
        if batch.num_rows:
            self._patients.append(_conform(batch, PATIENTS_SCHEMA, self.dataset))
            self._patient_types.append(record_type)

    def events(self, batch: pa.Table, record_type: str) -> None:
        if batch.num_rows:
            table = _conform(batch, EVENTS_SCHEMA, self.dataset)
            for name in ORIGIN_COLUMNS:
                col = batch.column(name) if name in batch.column_names else None
                if col is None:
                    col = pa.nulls(batch.num_rows, pa.string())
                elif col.type != pa.string():
                    col = col.cast(pa.string())
                table = table.append_column(name, col)
            self._events.append(table)
            self._event_types.append(record_type)

    def reject(self, record_type: str, file: str, locator: str, reason: str) -> None:
        self._counts[record_type].rejected[_reason_key(reason)] += 1
        self._rejects.append(
            {"record_type": record_type, "file": file, "locator": locator, "reason": reason}
        )
        if self.strict:
            raise IngestError(f"{file}: {locator}: {record_type} rejected: {reason}")

    def warn(self, record_type: str, file: str, locator: str, message: str) -> None:
        self._counts[record_type].warnings += 1
        log.warning("%s: %s: %s: %s", file, locator, record_type, message)

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and not self._closed:
            self.close()

    # -- writing --------------------------------------------------------------------------
    def close(self) -> IngestSummary:
        """Write Parquet, manifest.json and rejects.jsonl; return the run's summary."""
        if self._closed:
            assert self.summary is not None
            return self.summary
        self._closed = True
        self.store_dir.mkdir(parents=True, exist_ok=True)
        (self.store_dir / "events").mkdir(exist_ok=True)
        con = duckdb.connect()
        try:
            patients = self._write_patients(con)
            events_n = self._write_events(con)
        finally:
            con.close()
        self._write_rejects()
        summary = IngestSummary(
            dataset=self.dataset,
            store_dir=self.store_dir,
            by_type=dict(self._counts),
            patients_in_store=patients,
            events_in_dataset=events_n,
        )
        self._write_manifest(summary)
        self.summary = summary
        return summary

    def _write_patients(self, con: duckdb.DuckDBPyConnection) -> int:
        path = self.store_dir / "patients.parquet"
        new = pa.concat_tables(self._patients) if self._patients else PATIENTS_SCHEMA.empty_table()
        for rt in set(self._patient_types):
            n = sum(
                t.num_rows
                for t, t_rt in zip(self._patients, self._patient_types, strict=True)
                if t_rt == rt
            )
            self._counts[rt].stored += n
        old = pq.read_table(path) if path.exists() else PATIENTS_SCHEMA.empty_table()
        new = new.append_column("__i", pa.array(np.arange(new.num_rows, dtype=np.int64)))
        con.register("new_p", new)
        con.register("old_p", old)
        merged = con.sql(
            """
            WITH n AS (
              SELECT * EXCLUDE (rn) FROM (
                SELECT * EXCLUDE (__i),
                  row_number() OVER (PARTITION BY patient_id ORDER BY __i DESC) AS rn
                FROM new_p
                QUALIFY rn = 1)
            )
            SELECT * FROM old_p WHERE patient_id NOT IN (SELECT patient_id FROM n)
            UNION ALL SELECT * FROM n
            ORDER BY patient_id
            """
        ).to_arrow_table()
        merged = merged.cast(PATIENTS_SCHEMA)
        _atomic_write_parquet(merged, path)
        self._known_patients = merged.select(["patient_id"])
        return merged.num_rows

    def _write_events(self, con: duckdb.DuckDBPyConnection) -> int:
        path = self.store_dir / "events" / f"{self.dataset}.parquet"
        if self._events:
            typed = [
                t.append_column("record_type", pa.repeat(pa.scalar(rt, pa.string()), t.num_rows))
                for t, rt in zip(self._events, self._event_types, strict=True)
            ]
            new = pa.concat_tables(typed)
        else:
            new = EVENTS_SCHEMA.empty_table()
            for name in (*ORIGIN_COLUMNS, "record_type"):
                new = new.append_column(name, pa.array([], pa.string()))
        new = new.append_column("__i", pa.array(np.arange(new.num_rows, dtype=np.int64)))
        con.register("new_e", new)
        con.register("known", self._known_patients)
        # unknown patients -> rejects (one per source record)
        unknown = con.execute(
            """
            SELECT record_type, source, any_value(patient_id), arg_min(origin_file, __i),
              arg_min(origin_locator, __i)
            FROM new_e
            WHERE patient_id IS NULL OR patient_id NOT IN (SELECT patient_id FROM known)
            GROUP BY record_type, source ORDER BY source
            """
        ).fetchall()
        for rt, source, pid, origin_file, origin_locator in unknown:
            file = source.split(":", 1)[0] if source and ":" in source else ""
            reason = "missing patient reference" if pid is None else "unknown patient"
            self.reject(rt, origin_file or file, origin_locator or source or "", reason)
        # a record = its origin (file + line/entry) when the reader gives it, else its source;
        # so two records with the same id in one export both count (the later one is kept)
        stored = con.execute(
            """
            SELECT record_type,
              count(DISTINCT coalesce(origin_file || ':' || origin_locator, source))
            FROM new_e
            WHERE patient_id IN (SELECT patient_id FROM known) GROUP BY record_type
            """
        ).fetchall()
        for rt, n in stored:
            self._counts[rt].stored += n
        old = pq.read_table(path) if path.exists() else EVENTS_SCHEMA.empty_table()
        old = old.select(EVENTS_SCHEMA.names).cast(EVENTS_SCHEMA)
        n_new = new.num_rows
        con.register(
            "old_e",
            old.select(list(EVENTS_ORDER)).append_column(
                "__i", pa.array(np.arange(n_new, n_new + old.num_rows, dtype=np.int64))
            ),
        )
        # only the sort keys go through DuckDB; the rows are then taken in that order (moving
        # every column through the dedup and the sort costs several times more)
        order = ", ".join(EVENTS_ORDER)
        n0 = con.sql(
            f"""
            SELECT *, hash(event_id) AS h FROM (
              SELECT __i, {", ".join(EVENTS_ORDER[:-1])},
                coalesce(event_id, md5(concat_ws('|', dataset, source, code_system, code,
                                                  kind)))::VARCHAR AS event_id
              FROM new_e WHERE patient_id IN (SELECT patient_id FROM known))
            """
        ).to_arrow_table()
        con.register("n0", n0)
        # distinct 64-bit hashes prove distinct ids (a collision only costs the full dedup)
        hashes = np.sort(n0.column("h").to_numpy())
        if not (hashes[1:] == hashes[:-1]).any():
            # no event id twice among the new rows (the usual case): the dedup is a no-op
            dedup = f"SELECT __i, {order} FROM n0"
        else:
            # the last row of each event_id (a hash aggregate: cheaper than a window)
            last = ", ".join(f"arg_max_null({c}, __i) AS {c}" for c in EVENTS_ORDER[:-1])
            dedup = f"SELECT max(__i) AS __i, {last}, event_id FROM n0 GROUP BY event_id"
        # the store's layout (store.schema.EVENTS_ORDER; NULLs last, as the file metadata says)
        keys = con.sql(
            f"""
            WITH n AS ({dedup})
            SELECT __i, event_id FROM (
              SELECT __i, {order} FROM old_e WHERE event_id NOT IN (SELECT event_id FROM n)
              UNION ALL SELECT __i, {order} FROM n)
            ORDER BY {", ".join(f"{c} ASC NULLS LAST" for c in EVENTS_ORDER)}
            """
        ).to_arrow_table()
        rows = pa.concat_tables([new.select(EVENTS_SCHEMA.names).cast(EVENTS_SCHEMA), old])
        order = keys.column("__i").combine_chunks()
        names = [f.name for f in EVENTS_SCHEMA if f.name != "event_id"]
        if len(order) == rows.num_rows and _is_identity(order):
            # already in the target order (no duplicates, rows sorted): nothing to move
            taken = [rows.column(name).combine_chunks() for name in names]
        else:
            # the columns are independent and pyarrow releases the GIL: two at a time
            with ThreadPoolExecutor(max_workers=_TAKE_THREADS) as pool:
                taken = list(pool.map(lambda name: _take(rows.column(name), order), names))
        by_name = dict(zip(names, taken, strict=True))
        merged = pa.Table.from_arrays(
            [
                keys.column("event_id").cast(f.type) if f.name == "event_id" else by_name[f.name]
                for f in EVENTS_SCHEMA
            ],
            schema=EVENTS_SCHEMA,
        )
        _atomic_write_parquet(merged, path, **events_parquet_options())
        return merged.num_rows

    def _write_rejects(self) -> None:
        """rejects.jsonl keeps the last run's rejects of every dataset (this one's replaced)."""
        path = self.store_dir / "rejects.jsonl"
        kept: list[bytes] = []
        if path.exists():
            with path.open("rb") as f:
                for line in f:
                    if line.strip() and orjson.loads(line).get("dataset") != self.dataset:
                        kept.append(line.rstrip(b"\n"))
        tmp = path.with_suffix(".jsonl.tmp")
        # orjson: ~60k rejects (e.g. Synthea's unsupported resource types) in a few ms
        with tmp.open("wb") as f:
            for line in kept:
                f.write(line + b"\n")
            for r in self._rejects:
                f.write(orjson.dumps({"dataset": self.dataset, **r}) + b"\n")
        os.replace(tmp, path)

    def _write_manifest(self, summary: IngestSummary) -> None:
        path = self.store_dir / "manifest.json"
        manifest = json.loads(path.read_text("utf-8")) if path.exists() else {"datasets": {}}
        manifest.setdefault("datasets", {})[self.dataset] = {
            "ingested_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "source": self.source_path,
            "format": self.source_format,
            "events": summary.events_in_dataset,
            "read": summary.read,
            "stored": summary.stored,
            "rejected": summary.rejected,
            "by_type": {
                k: {"read": c.read, "stored": c.stored, "rejected": dict(c.rejected)}
                for k, c in sorted(summary.by_type.items())
            },
        }
        manifest["schema_version"] = 1
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", "utf-8")
        os.replace(tmp, path)
