"""Benchmark: N synthetic Bulk NDJSON Observations -> canonical store, resources/s end to end.

Usage: python bench/ingest.py [N] [--keep DIR] [--per-record] [--repeat R]
Prints Observations/s of ``trialsieve ingest --format fhir`` (parse, convert units, check
plausibility, write Parquet) and the ratio to a same-process baseline: plain orjson parse of
the same file. Not a timed test; target >= 150,000 Observations/s on a 2-core machine.
Also prints the CPU seconds of the process (all threads) and the load average, because on a
shared machine wall-clock throughput depends on what else runs. ``--per-record`` disables the
Observation fast path (``ingest/fhir_fast.py``) for comparison.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import orjson

from trialsieve.ingest import fhir
from trialsieve.ingest.runner import run_ingest
from trialsieve.store.writer import StoreWriter

LABS = [  # (LOINC, unit, low, high)
    ("2160-0", "mg/dL", 0.5, 4.0),
    ("14682-9", "umol/L", 40.0, 400.0),
    ("2823-3", "mmol/L", 3.0, 6.0),
    ("718-7", "g/dL", 8.0, 17.0),
    ("4548-4", "%", 4.5, 12.0),
    ("33914-3", "mL/min/{1.73_m2}", 10.0, 120.0),
]


def generate(folder: Path, n_obs: int, n_patients: int, seed: int = 7) -> None:
    """Write Patient.000.ndjson and Observation.000.ndjson (1 in 10 is a BP panel)."""
    rng = random.Random(seed)
    with (folder / "Patient.000.ndjson").open("wb") as f:
        for i in range(n_patients):
            f.write(orjson.dumps({"resourceType": "Patient", "id": f"p{i}", "gender": "female",
                                  "birthDate": "1960-01-01"}) + b"\n")  # fmt: skip
    with (folder / "Observation.000.ndjson").open("wb") as f:
        for i in range(n_obs):
            pid = f"p{rng.randrange(n_patients)}"
            t = f"2023-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T08:00:00+00:00"
            base = {"resourceType": "Observation", "id": f"o{i}", "status": "final",
                    "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": t}  # fmt: skip
            if i % 10 == 0:
                base["code"] = {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]}
                base["component"] = [
                    {"code": {"coding": [{"system": "http://loinc.org", "code": c}]},
                     "valueQuantity": {"value": v, "unit": "mmHg",
                                       "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
                    for c, v in (("8480-6", rng.randint(95, 180)), ("8462-4", rng.randint(55, 110)))
                ]  # fmt: skip
            else:
                code, unit, lo, hi = LABS[i % len(LABS)]
                base["code"] = {"coding": [{"system": "http://loinc.org", "code": code}]}
                value = round(rng.uniform(lo, hi), 2)
                base["valueQuantity"] = {
                    "value": value,
                    "unit": unit,
                    "system": "http://unitsofmeasure.org",
                    "code": unit,
                }
            f.write(orjson.dumps(base) + b"\n")


def baseline(path: Path) -> float:
    """Seconds for a plain orjson parse of every line."""
    t0 = time.perf_counter()
    n = 0
    with path.open("rb") as f:
        for line in f:
            orjson.loads(line)
            n += 1
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("n", nargs="?", type=int, default=200_000, help="Observations")
    ap.add_argument("--patients", type=int, default=2_000)
    ap.add_argument("--keep", type=Path, default=None, help="keep the store here")
    ap.add_argument("--per-record", action="store_true", help="disable the fast path")
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs (fresh store each); report the fastest"
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="trialsieve-bench-"))
    try:
        src = tmp / "bulk"
        src.mkdir()
        generate(src, args.n, args.patients)
        base_s = min(baseline(src / "Observation.000.ndjson") for _ in range(args.repeat))
        runs = []
        for i in range(args.repeat):
            # every run writes a new store; the last one goes to --keep when given
            store = (args.keep or tmp / "store") if i == args.repeat - 1 else tmp / f"store{i}"
            cpu0, t0 = os.times(), time.perf_counter()
            if args.per_record:
                writer = StoreWriter(store, "bench")
                fhir.read(src, writer, fast_path=False)
                summary = writer.close()
            else:
                summary = run_ingest("fhir", src, store, dataset="bench")
            total_s = time.perf_counter() - t0
            cpu1 = os.times()
            runs.append((total_s, (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)))
        total_s, cpu_s = min(runs)  # the least disturbed run on a shared machine
        obs = summary.by_type["Observation"]
        assert summary.balanced() and obs.stored == args.n, summary.table()
        mode = "per-record path" if args.per_record else "fast path"
        print(f"observations:        {args.n} ({mode}; best of {args.repeat})")
        print(f"end to end:          {total_s:.2f} s  = {args.n / total_s:,.0f} obs/s")
        print(f"  process CPU:       {cpu_s:.2f} s  = {args.n / cpu_s:,.0f} obs per CPU-second")
        print(f"orjson parse only:   {base_s:.2f} s  = {args.n / base_s:,.0f} obs/s")
        print(f"ratio end-to-end / parse-only throughput: {base_s / total_s:.2f}")
        print(f"load average (1 min) on {os.cpu_count()} CPUs: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
