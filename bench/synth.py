"""Synthetic population generator: time per patient and peak memory as N grows (issue 5).

The generator must stream: memory flat in N. For each format and population size this runs
``trialsieve synth --jobs 1`` as its own process (so that the peak RSS is the generator's own,
not a sum over worker processes) into a scratch folder, and prints wall time, time per patient
and peak RSS, then, per format, the ratios of the largest size to the smallest: peak memory
(flat: ~1.0, whatever the ratio of sizes) and time per patient (linear cost: ~1.0). Memory is
bounded by the chunk (``--chunk-size``, default 5,000 patients), so sizes below one chunk show
the growth up to it; compare sizes of at least one chunk.

    .venv/bin/python bench/synth.py [--sizes 10000,40000] [--formats store,pyaki,fhir]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from screen import BIN, measure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,40000", help="population sizes, ascending")
    ap.add_argument("--formats", default="store,pyaki,fhir")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    sizes = sorted(int(x) for x in args.sizes.split(","))
    print(f"{'format':>6} {'patients':>9} {'wall s':>7} {'us/patient':>10} {'peak MiB':>9}")
    for fmt in args.formats.split(","):
        rows = []
        for n in sizes:
            out = Path(tempfile.mkdtemp(prefix="trialsieve-synth-bench-")) / "out"
            try:
                wall, peak_gib = measure(
                    [str(BIN / "trialsieve"), "synth", "--patients", str(n), "--seed",
                     str(args.seed), "--format", fmt, "--out", str(out), "--jobs", "1"]
                )  # fmt: skip
            finally:
                shutil.rmtree(out.parent, ignore_errors=True)
            rows.append((n, wall, peak_gib * 1024))
            print(f"{fmt:>6} {n:>9,} {wall:>7.1f} {wall / n * 1e6:>10.0f} {peak_gib * 1024:>9.0f}",
                  flush=True)  # fmt: skip
        if len(rows) > 1:
            (n0, w0, m0), (n1, w1, m1) = rows[0], rows[-1]
            print(f"{fmt:>6} {n1 // n0}x the patients: peak memory x{m1 / m0:.2f} (flat: ~1), "
                  f"time per patient x{(w1 / n1) / (w0 / n0):.2f} (linear: ~1)")  # fmt: skip


if __name__ == "__main__":
    main()
