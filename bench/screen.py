"""Population screening benchmark (issue 5, benchmarks 2-4).

For each population size: a synthetic store (``trialsieve synth``, generated once into .bench/),
then, each as its own process so that wall time and peak memory are the process's own:

- the floor: a plain DuckDB scan of the Parquet columns screening reads (every column of
  ``RULE_COLUMNS``, each aggregated; until 2026-11-30 it left out ``unit``, ``value_text``,
  ``ref_low`` and ``route``, ~7 % of the scan at 1M), timed before and after the screening,
  the faster counting: a first read from a cold page cache flattered the ratio (1M: a 7.5-s
  floor against 6.1 s warm);
- ``trialsieve screen`` of all four trials, results written (``--format parquet``, the
  population-scale output, or ``jsonl``);

and prints wall time, peak RSS, time per patient and the ratio screen / floor (target <= 5x; 1M
patients <= 60 s and <= 8 GB on 2 cores; time per patient flat from 10k to 1M). With
``--explain K`` it then times single-patient explanations for K patients of the largest store,
p50/p95 (target p95 <= 50 ms), two ways:

- the worklist path: the patient's records looked up in the run's results.parquet
  (``trialsieve explain``; one lookup object per session, as a server holds it);
- re-evaluation: the same rules run on a one-patient population (``screen --patient``), for
  min(K, 20) patients, to show what a fresh-data re-check costs.

    .venv/bin/python bench/screen.py --sizes 10000,100000 [--seed 1] [--explain 1000]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from latency import describe, time_each
from trialsieve.screen.backend import RULE_COLUMNS

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
WORK = REPO / ".bench" / "screen"
AS_OF = "2026-06-01T08:00:00"

#: the floor's query: every event column the rules read (``RULE_COLUMNS``), each aggregated
FLOOR = """
import duckdb, sys
store, aggs = sys.argv[1], sys.argv[2]
con = duckdb.connect()
events = f"read_parquet('{store}/events/*.parquet')"
print(con.execute(f"SELECT count(*), {aggs} FROM {events}").fetchall())
"""
FLOOR_AGGS = ", ".join(f"sum({c})" if c == "value" else f"max({c})" for c in RULE_COLUMNS)


def measure(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak RSS GiB) of that process alone."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, usage.ru_maxrss / 1024 / 1024


def store_for(n: int, seed: int) -> Path:
    store = WORK / f"synth-{n}-s{seed}"
    if (store / "patients.parquet").exists() and not (store / "events" / "synth.parquet").exists():
        shutil.rmtree(store)  # the synth's layout before 2026-11-30 (a file per chunk)
    if not (store / "patients.parquet").exists():
        t = time.perf_counter()
        subprocess.run(
            [str(BIN / "trialsieve"), "synth", "--patients", str(n), "--seed", str(seed),
             "--out", str(store), "--jobs", "2"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        print(f"  generated {n:,} patients in {time.perf_counter() - t:.1f} s (not timed below)")
    return store


def explain_latency(store: Path, results: Path, k: int, seed: int) -> None:
    import datetime as dt

    import duckdb

    from trialsieve.protocols.loader import load_bundled
    from trialsieve.screen.engine import screen_store
    from trialsieve.screen.results_file import ResultsLookup

    protocols = load_bundled()
    ids = [r[0] for r in duckdb.sql(
        f"SELECT patient_id FROM read_parquet('{store}/patients.parquet')").fetchall()]  # fmt: skip
    sample = random.Random(seed).sample(ids, min(k, len(ids)))
    t = time.perf_counter()
    lookup = ResultsLookup(results)
    print(f"explain: results.parquet opened in {(time.perf_counter() - t) * 1000:.0f} ms")
    # 0 records: the patient died or was born after the screening instant
    assert all(len(lookup.patient(pid)) in (0, len(protocols)) for pid in sample[:10])
    times = time_each(lookup.patient, sample)
    print(f"explain {len(times)} patients of {store.name} from results.parquet: "
          f"{describe(times)} (target p95 <= 50 ms)")  # fmt: skip
    as_of = dt.datetime.fromisoformat(AS_OF)
    times = time_each(lambda pid: screen_store(store, protocols, as_of, patient_ids=[pid]).records,
                      sample[:20])  # fmt: skip
    print(f"re-evaluate {len(times)} patients alone (screen --patient): {describe(times)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--explain", type=int, default=0, help="time K single-patient explanations")
    ap.add_argument("--format", choices=["parquet", "jsonl"], default="parquet")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"{'patients':>10} {'floor s':>8} {'screen s':>9} {'peak GiB':>8} {'us/patient':>10} "
          f"{'ratio':>6}")  # fmt: skip
    largest = None
    for n in (int(x) for x in args.sizes.split(",")):
        store = store_for(n, args.seed)
        floor_cmd = [sys.executable, "-c", FLOOR, str(store), FLOOR_AGGS]
        before, _ = measure(floor_cmd)
        out = WORK / f"results-{n}.{args.format}"
        wall, peak = measure(
            [str(BIN / "trialsieve"), "screen", "--store", str(store), "--as-of", AS_OF,
             "--out", str(out)]
        )  # fmt: skip
        floor = min(before, measure(floor_cmd)[0])
        print(f"{n:>10,} {floor:>8.1f} {wall:>9.1f} {peak:>8.2f} {wall / n * 1e6:>10.0f} "
              f"{wall / floor:>6.1f}", flush=True)  # fmt: skip
        largest = store, out
    if args.explain and largest is not None:
        store, out = largest
        if out.suffix != ".parquet":
            raise SystemExit("--explain looks patients up in results.parquet: use --format parquet")
        explain_latency(store, out, args.explain, args.seed)


if __name__ == "__main__":
    main()
