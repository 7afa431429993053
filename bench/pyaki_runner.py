"""Run pyAKI 1.0.13 over a folder of pyAKI-format CSVs; write each stay's maximum KDIGO stage.

Runs under the pyAKI venv's Python 3.12 (``.bench/pyaki-venv/bin/python``), never under the
trialsieve venv: it imports only pandas and pyAKI. Started by ``bench/aki_vs_pyaki.py``.

Input folder (the files pyAKI's own CLI ``pyaki-cli`` reads, its default column names):
- ``creatinine.csv``: ``stay_id,charttime,creat`` (mg/dL, pyAKI accepts no other unit);
- ``urineoutput.csv`` (optional): ``stay_id,charttime,urineoutput`` (mL charted in that hour);
- ``rrt.csv`` (optional, used when it has rows): ``stay_id,charttime,rrt_status`` (1 = on RRT);
- ``demographics.csv``: ``stay_id,weight`` (kg). pyAKI skips *every* creatinine probe of a stay
  that has no demographics row (``utils.dataset_as_df`` needs both frames), so all stays get one.

Output ``--out`` CSV: ``patient_id,max_stage,max_creat_stage,max_urine_stage`` (empty = no staged
hour), one row per stay processed (``patient_id`` = pyAKI's ``stay_id``). ``--meta`` JSON:
counts and the seconds spent reading, preprocessing (``Analyser.__init__``) and probing, so a
run cut by ``--budget-s`` can be extrapolated by the caller.

Modes:
- ``loop`` (default): ``Analyser.process_stay`` per stay, keeping only that stay's maxima, with
  one ``Analyser`` per ``--batch`` stays (pyAKI preprocesses all its data at once, resampling
  every history hourly: multi-year histories of 10,000 stays do not fit in memory otherwise).
  Linear in the number of stays, flat in memory: the most favourable way to drive pyAKI.
- ``api``: ``Analyser.process_stays()`` on one ``Analyser``, pyAKI's documented entry point. It
  concatenates the growing result once per stay (``kdigo.py``), so its cost is quadratic.

Dataset order matters: ``Analyser.process_stays`` takes the stay ids of the *first* dataset only
(the ``stay_ids.join(...)`` result is discarded in ``kdigo.py``), and ``pyaki-cli`` puts the urine
output first, so the CLI silently skips stays without urine output. Creatinine goes first here.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import pandas as pd
from pyaki.kdigo import Analyser
from pyaki.utils import Dataset, DatasetType

STAGE_COLUMNS = ("stage", "abs_creatinine_stage", "rel_creatinine_stage", "urineoutput_stage")


def _stay_max(result: pd.DataFrame) -> pd.DataFrame:
    """One row per stay: the maximum of each pyAKI stage column (NaN when absent)."""
    cols = {c: result[c] if c in result.columns else float("nan") for c in STAGE_COLUMNS}
    return pd.DataFrame(cols, index=result.index).groupby(level=0).max()


def main() -> None:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True, help="folder with the pyAKI CSVs")
    ap.add_argument("--out", type=Path, required=True, help="per-stay maximum stages (CSV)")
    ap.add_argument("--meta", type=Path, help="timings and counts (JSON)")
    ap.add_argument("--mode", choices=("loop", "api"), default="loop")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=0.0,
        help="loop mode: stop probing after this many seconds (0 = no limit)",
    )
    ap.add_argument(
        "--batch",
        type=int,
        default=500,
        help="loop mode: stays per Analyser (pyAKI preprocesses all its data at once and "
        "resamples every history hourly; 0 = all stays in one Analyser)",
    )
    args = ap.parse_args()
    # pyAKI warns once per stay and probe when a dataset is absent (no urine): keep stderr usable
    logging.getLogger("pyaki").setLevel(logging.ERROR)
    # pandas FutureWarnings from pyAKI's groupby().resample(), once per run: not ours to fix
    warnings.filterwarnings("ignore", category=FutureWarning)

    t0 = time.perf_counter()
    frames = {DatasetType.CREATININE: pd.read_csv(args.dir / "creatinine.csv")}
    uo = args.dir / "urineoutput.csv"
    if uo.is_file():
        frames[DatasetType.URINEOUTPUT] = pd.read_csv(uo)
    frames[DatasetType.DEMOGRAPHICS] = pd.read_csv(args.dir / "demographics.csv")
    rrt = args.dir / "rrt.csv"
    if rrt.is_file() and len(frame := pd.read_csv(rrt)):
        frames[DatasetType.RRT] = frame
    t_read = time.perf_counter()

    stay_ids = frames[DatasetType.CREATININE]["stay_id"].unique()
    batch = len(stay_ids) if args.mode == "api" or args.batch <= 0 else args.batch
    done, rows, pre_s, probe_s = 0, 0, 0.0, 0.0
    parts = []
    for k in range(0, len(stay_ids), batch):
        if args.budget_s and pre_s + probe_s > args.budget_s:
            break
        ids = stay_ids[k : k + batch]
        tb = time.perf_counter()
        analyser = Analyser(
            [Dataset(dt, df[df["stay_id"].isin(ids)].copy()) for dt, df in frames.items()]
        )
        tp = time.perf_counter()
        pre_s += tp - tb
        if args.mode == "api":
            result = analyser.process_stays()
            rows += len(result)
            parts.append(_stay_max(result))
            done += len(ids)
        else:  # keep each stay's maxima only: memory stays flat in the number of stays
            for stay_id in ids:
                if args.budget_s and pre_s + (time.perf_counter() - tp) + probe_s > args.budget_s:
                    break
                result = analyser.process_stay(stay_id)
                rows += len(result)
                parts.append(_stay_max(result))
                done += 1
        probe_s += time.perf_counter() - tp
        del analyser
    per_stay = pd.concat(parts)
    t_probe = time.perf_counter()

    creat = per_stay[["abs_creatinine_stage", "rel_creatinine_stage"]].max(axis=1)
    out = pd.DataFrame(
        {
            "max_stage": per_stay["stage"],
            "max_creat_stage": creat,
            "max_urine_stage": per_stay["urineoutput_stage"],
        }
    )
    out.index.name = "patient_id"
    out.astype("Int64").to_csv(args.out)
    t_end = time.perf_counter()
    if args.meta:
        meta = {
            "mode": args.mode,
            "stays_total": int(len(stay_ids)),
            "stays_done": int(done),
            "batch": int(batch),
            "read_s": t_read - t0,
            "preprocess_s": pre_s,
            "probe_s": probe_s,
            "process_s": t_probe - t_read,
            "write_s": t_end - t_probe,
            "result_rows": int(rows),
        }
        args.meta.write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
