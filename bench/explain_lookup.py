"""Explanation lookups in a population-sized results.parquet (issue 5, benchmark 4).

Builds a results file of any size without screening that many patients (``bench/screen.py``
times lookups in a real 1M run's file): the records of ``--from`` (a results.parquet of
``bench/screen.py``) repeated with fresh patient ids until ``--patients`` patients (x 4 trials)
are present, written by the same writer (``screen.results_file.ResultsWriter``: a block per
copy, row groups of ``ROW_GROUP``). It then times, in one process, opening the file and
``--lookups`` single-patient lookups (p50/p95; target p95 <= 50 ms), and, as the baseline in
the same run, the same lookups done by a DuckDB query over the file.

    .venv/bin/python bench/explain_lookup.py --from .bench/screen/results-100000.parquet \\
        --patients 1000000 [--lookups 1000]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq

from latency import describe, p95, time_each
from trialsieve.screen.results_file import (
    CRITERIA_KEY,
    ITEM_COLUMNS,
    RECORD_COLUMNS,
    ResultsLookup,
    ResultsWriter,
)

WORK = Path(__file__).resolve().parents[1] / ".bench" / "explain"


def build(src: Path, patients: int, out: Path) -> int:
    """Write ``out``: the records and items of ``src`` repeated under new ids up to
    ``patients``, one block per copy."""
    base = pq.read_table(src)
    records = base.filter(pc.is_null(base["i"])).select(list(RECORD_COLUMNS))
    items = base.filter(pc.is_valid(base["i"])).select(list(ITEM_COLUMNS))
    n_src = len(pc.unique(records["patient_id"]))
    copies = -(-patients // n_src)
    criteria = json.loads(base.schema.metadata[CRITERIA_KEY.encode()])
    with ResultsWriter(out, records.schema, items.schema, criteria) as writer:
        # ids "R<copy><original id>" keep each copy sorted and copies in order
        for k in range(copies):
            writer.write(*(t.set_column(0, "patient_id", pc.binary_join_element_wise(
                f"R{k:04d}", t["patient_id"], "")) for t in (records, items)))  # fmt: skip
    return writer.rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="src", type=Path, required=True)
    ap.add_argument("--patients", type=int, default=1_000_000)
    ap.add_argument("--lookups", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    out = WORK / f"results-{args.patients}.parquet"
    t = time.perf_counter()
    rows = build(args.src, args.patients, out)
    print(f"built {out.name}: {rows:,} records, {out.stat().st_size / 2**20:.0f} MiB, "
          f"{pq.ParquetFile(out).metadata.num_row_groups:,} row groups "
          f"in {time.perf_counter() - t:.1f} s (not timed below)")  # fmt: skip
    ids = [r[0] for r in duckdb.sql(
        f"SELECT DISTINCT patient_id FROM read_parquet('{out}')").fetchall()]  # fmt: skip
    sample = random.Random(args.seed).sample(ids, min(args.lookups, len(ids)))
    t = time.perf_counter()
    lookup = ResultsLookup(out)
    print(f"open: {(time.perf_counter() - t) * 1000:.0f} ms (once per session)")
    ours = time_each(lookup.patient, sample)
    assert all(len(lookup.patient(pid)) == 4 for pid in sample[:10])
    print(f"ResultsLookup, {len(ours)} patients: {describe(ours)} (target p95 <= 50 ms)")
    con = duckdb.connect()
    query = f"SELECT * FROM read_parquet('{out}') WHERE patient_id = ?"
    base = time_each(lambda pid: con.execute(query, [pid]).fetchall(), sample[:100])
    print(f"baseline DuckDB query, {len(base)} patients: {describe(base)}; "
          f"p95 ratio baseline / ours {p95(base) / p95(ours):.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
