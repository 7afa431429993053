"""Benchmark: ``trialsieve aki`` against pyAKI 1.0.13 on the same synthetic patients.

Usage::

    .venv/bin/python bench/aki_vs_pyaki.py [--sizes 1000,10000] [--quick] [--seed 5]
        [--source synth|bench] [--pyaki-mode loop|api] [--pyaki-budget-s 900] [--keep DIR]

For each size N it (1) creates the pyAKI venv ``.bench/pyaki-venv`` if missing (Python 3.12 via
pyenv, ``pip install pyaki==1.0.13``), (2) generates N patients x 50 creatinine values (+ urine
output), written both in the ``trialsieve aki`` layouts and in pyAKI's, (3) times each whole
process (subprocess wall and CPU time, interpreter start and CSV I/O included; trialsieve is run
``--ts-runs`` times before pyAKI and as many times after it, 3 by default, and the (upper)
median of all those runs counts: a 1-s process is far noisier on a shared machine than pyAKI's
minutes, and runs on both sides of pyAKI's sample the machine's speed over the time pyAKI ran),
(4) prints both times and the ratio (target: trialsieve >= 100x faster at 10,000 patients), (5)
compares the per-patient maximum KDIGO stage and attributes every disagreement to known pyAKI
deviations.
When pyAKI's per-stay loop exceeds ``--pyaki-budget-s`` it stops; its total is then extrapolated
linearly from the measured per-patient probe time and the output says EXTRAPOLATED.

Sources (``--source``):
- ``synth`` (default): ``trialsieve synth --format pyaki --creatinine-per-patient 50``, the
  population generator whose pyAKI export issue 5 names for this benchmark ("the same generated
  patients"): multi-year outpatient histories plus admissions, ICU stays with hourly urine
  output, RRT. pyAKI resamples each history hourly, which makes it slow per patient (~48 ms;
  10,000 patients ~8 min). Its pyAKI files chart urine at the end of each hour.
- ``bench``: this script's own generator, one ICU-like stay of a few days per patient (below):
  the data pyAKI was made for and is fastest on (~10 ms per patient), so the harder comparison
  for ``trialsieve aki``; report it beside the default.

How disagreements are explained (the "detectors"): a small per-patient reference model restages
the patient with each deviation as a switch. With every switch off it must reproduce
``trialsieve aki``; with every switch on it must reproduce pyAKI (both checked for every patient
and printed). A disagreement is attributed to the smallest set of switches that turns the
trialsieve answer into pyAKI's ("differs only because of ..."). A patient for which either
model fails to reproduce its engine, or no set works, is counted as unexplained.

The deviations, each read from the pyAKI 1.0.13 source (module.class):
- ``hourly-binning`` (preprocessors.CreatininePreProcessor): results are averaged per clock hour
  and windows are whole hours (t-48 h, t] instead of trialsieve's exact [t-48 h, t);
- ``72h-carry-forward`` (same, ``ffill(limit=72)``): each hourly value is repeated for up to 72 h
  and the repeats are staged and enter the 48-h/7-d minima, so a value up to 120 h old still acts
  as the "48-h" reference;
- ``scr>=4-stage3`` (probes.AbsoluteCreatinineProbe): creatinine >= 4.0 mg/dL is stage 3 with no
  rise at all (KDIGO 2012 Table 2 requires it together with an acute rise);
- ``mgdl-isclose`` (utils.approx_gte): thresholds compared in mg/dL with ``np.isclose``
  tolerance, trialsieve compares in umol/L (26.5 umol/L = 0.2998 mg/dL);
- ``no-median-baseline`` (probes.RelativeCreatinineProbe, ``ROLLING_MIN`` over 7 d): no
  baseline from the median of days 8-365, which trialsieve uses when the last 7 days are empty;
- ``no-weight-no-creatinine`` (utils.dataset_as_df): a stay without a demographics (weight) row
  gets no creatinine stage at all;
- ``uo-zero-missing`` (preprocessors.UrineOutputPreProcessor): a charted 0 mL hour becomes
  missing, so anuria is never seen as such;
- ``uo-gap-interpolation`` (same): the volume charted after k missing hours is spread evenly over
  them (k <= 6), where trialsieve treats a charting gap as unknown and ends the oliguria run;
- ``uo-rolling-mean`` (probes.UrineOutputProbe, default ``UrineOutputMethod.MEAN``): the mean over
  the last 6/12/24 hours is compared with the threshold, trialsieve requires every hour below
  (KDIGO 2012 Table 2 "for >= 6 h"; pyAKI's own STRICT method would agree);
- ``uo-anuria<0.1`` (same, ``anuria_limit=0.1``): stage 3 for a 12-h mean < 0.1 mL/kg/h,
  trialsieve needs 12 h of charted 0 mL (KDIGO "anuria for >= 12 h");
- ``uo-single-weight`` (same): one weight per stay, where trialsieve uses the most recent weight
  charted at or before each period.
The first four and ``uo-zero-missing`` are listed in ../shared/STACK.md; the others were found
by this bench in pyAKI's source. RRT (``synth`` only) is stage 3 in both engines.

``bench`` data (deterministic in the seed; no RRT, no 7-day gap, so the trialsieve median-8-365 d
baseline never applies): baseline creatinine normal (80 %), CKD (15 %) or ~4.4 mg/dL CKD G5
(5 %); sampling every 4-14 h with 4 % repeat draws 5-50 min later and 6 % gaps of 48-100 h;
AKI in 45 % = linear rise over 12-96 h to x1.2-5, plateau, exponential recovery; 4 % lab noise,
reported to 0.01 mg/dL. Urine for ~30 %: whole-hour periods over 48-120 h, 0.6-1.6 mL/kg/h,
oliguric spells 0.12-0.48 mL/kg/h, anuric spells (0 mL), 1.5 % isolated 0 mL hours and 3 %
uncharted hours; the first and last hour of a stay are always charted and non-zero (pyAKI's gap
handling is not grouped by stay: a stay ending in missing hours would be back-filled from the
next stay's first hour).
"""

from __future__ import annotations

import argparse
import compileall
import csv
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

ROOT = Path(__file__).resolve().parents[1]
PYAKI_VENV = ROOT / ".bench" / "pyaki-venv"
PYAKI_VERSION = "1.0.13"
TRIALSIEVE = ROOT / ".venv" / "bin" / "trialsieve"
RUNNER = ROOT / "bench" / "pyaki_runner.py"
PER_PATIENT = 50
EPOCH0 = 1735689600  # 2025-01-01T00:00:00Z
H = 3600
DAY = 86400
UMOL = 88.4  # umol/L per mg/dL, as trialsieve.kidney.creatinine
EPS = 1e-6  # trialsieve.kidney.aki.EPS_UMOL_L

CREAT_FLAGS = ("hourly-binning", "72h-carry-forward", "scr>=4-stage3", "mgdl-isclose",
               "no-median-baseline", "no-weight-no-creatinine")  # fmt: skip
URINE_FLAGS = ("uo-zero-missing", "uo-gap-interpolation", "uo-rolling-mean", "uo-anuria<0.1",
               "uo-single-weight")  # fmt: skip
IN_STACK_MD = {"hourly-binning", "72h-carry-forward", "scr>=4-stage3", "mgdl-isclose",
               "uo-zero-missing"}  # fmt: skip


# ----------------------------------------------------------------------------- pyAKI venv
def ensure_pyaki_venv() -> Path:
    """Create ``.bench/pyaki-venv`` with pyaki==1.0.13 under Python 3.12 if missing."""
    py = PYAKI_VENV / "bin" / "python"
    if not py.exists():
        print(f"creating {PYAKI_VENV} (Python 3.12, pyaki=={PYAKI_VERSION}) ...", flush=True)
        PYAKI_VENV.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYENV_VERSION="3.12.1")
        subprocess.run(["python3.12", "-m", "venv", str(PYAKI_VENV)], check=True, env=env)
        subprocess.run([str(py), "-m", "pip", "install", "-q", f"pyaki=={PYAKI_VERSION}"],
                       check=True)  # fmt: skip
    got = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('pyaki'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    if got != PYAKI_VERSION:
        sys.exit(f"{PYAKI_VENV}: pyaki {got} installed, {PYAKI_VERSION} needed (Python >= 3.12)")
    return py


# ----------------------------------------------------------------------------- generator
@dataclass
class Urine:
    """One patient's hourly urine output (consecutive clock hours from ``start``)."""

    start: int  # epoch seconds of the first hour
    vol: np.ndarray  # mL charted in each hour, NaN = not charted
    w_hour: np.ndarray  # trialsieve's weight for each hour (most recent at or before it), NaN


@dataclass
class Cohort:
    """The patients as both engines see them (one pyAKI stay per patient)."""

    ids: list[str]  # trialsieve patient_id
    stays: list[int]  # pyAKI stay_id
    t: list[np.ndarray]  # creatinine times, epoch seconds, increasing
    scr: list[np.ndarray]  # creatinine mg/dL
    w_pyaki: list[float | None]  # pyAKI demographics weight (None: no row)
    urine: dict[int, Urine]  # patient index -> hourly urine (absent: none)
    rrt: set[int]  # patient indexes with a renal replacement therapy record
    outside: dict[int, str]  # patient index -> why the reference model cannot restage it

    @property
    def n(self) -> int:
        """Number of patients."""
        return len(self.ids)


def generate(n: int, seed: int) -> Cohort:
    """N synthetic inpatients x 50 creatinine values, hourly urine output for some."""
    rng = np.random.default_rng(seed)
    k = PER_PATIENT
    kind = rng.random(n)
    base = np.where(
        kind < 0.80,
        rng.lognormal(np.log(0.9), 0.2, n),
        np.where(
            kind < 0.95, rng.lognormal(np.log(1.8), 0.3, n), rng.lognormal(np.log(4.4), 0.12, n)
        ),
    )
    u = rng.random((n, k - 1))
    gaps_h = np.where(
        u < 0.04,
        rng.uniform(5, 50, (n, k - 1)) / 60,
        np.where(u < 0.10, rng.uniform(48, 100, (n, k - 1)), rng.uniform(4, 14, (n, k - 1))),
    )
    t0 = EPOCH0 + rng.integers(0, 300 * DAY, n)
    offs = np.concatenate([np.zeros((n, 1)), np.cumsum(np.round(gaps_h * H), axis=1)], axis=1)
    t = t0[:, None] + offs.astype(np.int64)

    aki = rng.random(n) < 0.45
    k0 = rng.integers(5, 36, n)
    onset = t[np.arange(n), k0].astype(float)
    rise = rng.uniform(12, 96, n) * H
    r = rng.random(n)
    peak = np.where(
        r < 0.30,
        rng.uniform(1.2, 1.5, n),
        np.where(r < 0.65, rng.uniform(1.5, 2, n),
                 np.where(r < 0.85, rng.uniform(2, 3, n), rng.uniform(3, 5, n))),
    )  # fmt: skip
    plateau = rng.uniform(6, 72, n) * H
    tau = rng.uniform(24, 120, n) * H
    resid = rng.uniform(1.0, 1.3, n)
    dt = t - onset[:, None]
    ramp = np.clip(dt / rise[:, None], 0, 1)
    after = np.clip(dt - rise[:, None] - plateau[:, None], 0, None)
    decay = resid[:, None] + (peak - resid)[:, None] * np.exp(-after / tau[:, None])
    mult = np.where(after > 0, decay, 1 + (peak[:, None] - 1) * ramp)
    mult = np.where(aki[:, None], mult, 1.0)
    scr = np.round(np.clip(base[:, None] * mult * rng.lognormal(0, 0.04, (n, k)), 0.2, 30), 2)

    weight = np.round(rng.uniform(50, 110, n), 1)
    has_uo = rng.random(n) < np.where(aki, 0.5, 0.2)
    urine: dict[int, Urine] = {}
    for i in np.flatnonzero(has_uo):
        hours = int(rng.integers(48, 121))
        if aki[i]:
            start = onset[i] - rng.uniform(0, 24) * H
        else:
            start = float(t[i, rng.integers(0, 40)])
        start_h = int(start // H) * H
        rate = rng.uniform(0.6, 1.6) * rng.lognormal(0, 0.25, hours)
        if (aki[i] and rng.random() < 0.6) or rng.random() < 0.1:
            o, d = int(rng.integers(0, hours - 4)), int(rng.integers(3, 31))
            rate[o : o + d] = rng.uniform(0.12, 0.48, len(rate[o : o + d]))
        if rng.random() < 0.12:
            o, d = int(rng.integers(0, hours - 4)), int(rng.integers(6, 21))
            rate[o : o + d] = 0.0
        rate[rng.random(hours) < 0.015] = 0.0
        vol = np.round(rate * weight[i])
        vol[rng.random(hours) < 0.03] = np.nan
        for j in (0, hours - 1):
            if not vol[j] > 0:
                vol[j] = max(1.0, np.round(rng.uniform(0.6, 1.6) * weight[i]))
        urine[int(i)] = Urine(start_h, vol, np.full(hours, weight[i]))
    return Cohort(ids=[f"p{i:06d}" for i in range(n)], stays=list(range(n)), t=list(t),
                  scr=list(scr), w_pyaki=[float(w) for w in weight], urine=urine, rrt=set(),
                  outside={})  # fmt: skip


def _iso(seconds: np.ndarray, sep: str = "T", z: str = "Z") -> list[str]:
    text = np.datetime_as_string(np.asarray(seconds, dtype="datetime64[s]"), unit="s")
    return [s.replace("T", sep) + z for s in text.tolist()]


def write_inputs(c: Cohort, folder: Path) -> tuple[Path, Path]:
    """Write ``ts/`` (trialsieve aki layouts) and ``pyaki/`` (pyAKI layouts); return both.

    pyAKI's ``stay_id`` is the patient's integer index: its urine preprocessing sums every column
    per hour (``resample("1h").sum()``), which turns a text identifier into an object column that
    the urine probe's ``rolling`` then rejects (pandas DataError), so pyAKI needs numeric ids.
    The weight is charted 2 days before the first creatinine (before any urine period).
    """
    ts, pk = folder / "ts", folder / "pyaki"
    ts.mkdir(parents=True, exist_ok=True)
    pk.mkdir(parents=True, exist_ok=True)
    flat_t, flat_v = np.concatenate(c.t), np.concatenate(c.scr)
    who = np.repeat(np.arange(c.n), [len(x) for x in c.t])
    iso, plain = _iso(flat_t), _iso(flat_t, " ", "")
    vals = [f"{v:.2f}" for v in flat_v.tolist()]
    ids = c.ids
    with (ts / "creatinine.csv").open("w") as f:
        f.write("patient_id,time,value,unit\n")
        f.writelines(f"{ids[p]},{s},{v},mg/dL\n" for p, s, v in zip(who, iso, vals, strict=True))
    with (pk / "creatinine.csv").open("w") as f:
        f.write("stay_id,charttime,creat\n")
        f.writelines(f"{p},{s},{v}\n" for p, s, v in zip(who, plain, vals, strict=True))
    wtime = _iso(np.array([x[0] for x in c.t]) - 2 * DAY)
    with (ts / "weights.csv").open("w") as f, (pk / "demographics.csv").open("w") as fd:
        f.write("patient_id,time,weight_kg\n")
        fd.write("stay_id,weight\n")
        for i, w in enumerate(c.w_pyaki):
            f.write(f"{ids[i]},{wtime[i]},{w:.1f}\n")
            fd.write(f"{i},{w:.1f}\n")
    with (ts / "urine.csv").open("w") as fu, (pk / "urineoutput.csv").open("w") as fp:
        fu.write("patient_id,start,end,volume_ml\n")
        fp.write("stay_id,charttime,urineoutput\n")
        for i, uo in c.urine.items():
            ok = np.flatnonzero(~np.isnan(uo.vol))
            starts = uo.start + ok * H
            s_iso, e_iso, p_iso = _iso(starts), _iso(starts + H), _iso(starts, " ", "")
            for j, a, b, pa in zip(ok.tolist(), s_iso, e_iso, p_iso, strict=True):
                fu.write(f"{ids[i]},{a},{b},{uo.vol[j]:.0f}\n")
                fp.write(f"{i},{pa},{uo.vol[j]:.0f}\n")
    return ts, pk


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _epoch(texts: list[str]) -> np.ndarray:
    """ISO-8601 UTC texts (``...Z`` or naive) -> int64 epoch seconds."""
    clean = [x.strip().rstrip("Z").replace(" ", "T") for x in texts]
    return np.array(clean, dtype="datetime64[s]").astype(np.int64)


def run_synth(n: int, seed: int, out: Path) -> None:
    """``trialsieve synth --format pyaki --creatinine-per-patient 50`` into ``out``."""
    cmd = [str(TRIALSIEVE), "synth", "--patients", str(n),
           "--seed", str(seed), "--out", str(out), "--format", "pyaki",
           "--creatinine-per-patient", str(PER_PATIENT)]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def load_synth(folder: Path) -> Cohort:
    """Read ``trialsieve synth --format pyaki`` output back into a :class:`Cohort`.

    Patients the reference model cannot restage exactly (urine periods that are not whole clock
    hours) are kept for timing and agreement and listed in ``outside``.
    """
    creat = _read_csv(folder / "creatinine.csv")
    ids = sorted({r["patient_id"] for r in creat})
    index = {p: i for i, p in enumerate(ids)}
    pt = _epoch([r["time"] for r in creat])
    pv = np.array([float(r["value"]) for r in creat])
    who = np.array([index[r["patient_id"]] for r in creat])
    order = np.lexsort((pt, who))
    bounds = np.searchsorted(who[order], np.arange(len(ids) + 1))
    pt, pv = pt[order], pv[order]
    t = [pt[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    v = [pv[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    demo = {int(r["stay_id"]): float(r["weight"]) for r in _read_csv(folder / "pyaki" /
            "demographics.csv") if r["weight"]}  # fmt: skip
    stays = [int(p[1:]) for p in ids]
    weights: dict[int, list[tuple[int, float]]] = {}
    rows = [r for r in _read_csv(folder / "weights.csv") if r["weight_kg"]]
    wt = _epoch([r["time"] for r in rows]).tolist()
    for r, tt in zip(rows, wt, strict=True):
        if r["patient_id"] in index:
            weights.setdefault(index[r["patient_id"]], []).append((tt, float(r["weight_kg"])))
    periods: dict[int, list[tuple[int, int, float]]] = {}
    rows = _read_csv(folder / "urine.csv")
    ua = _epoch([r["start"] for r in rows]).tolist()
    ub = _epoch([r["end"] for r in rows]).tolist()
    for r, a, b in zip(rows, ua, ub, strict=True):
        periods.setdefault(index[r["patient_id"]], []).append((a, b, float(r["volume_ml"])))
    outside: dict[int, str] = {}
    urine: dict[int, Urine] = {}
    for i, ps in periods.items():
        if any(b - a != H or a % H for a, b, _ in ps):
            outside[i] = "urine periods not whole clock hours"
            continue
        first = min(a for a, _, _ in ps)
        hours = (max(a for a, _, _ in ps) - first) // H + 1
        vol = np.full(hours, np.nan)
        for a, _, x in ps:
            j = (a - first) // H
            vol[j] = x if np.isnan(vol[j]) else vol[j] + x
        w_hour = np.full(hours, np.nan)
        ws = sorted(weights.get(i, []))
        if ws:  # most recent weight at or before each hour (several at that instant: mean)
            wt_u = np.array(sorted({tw for tw, _ in ws}))
            w_mean = np.array([np.mean([w for tw, w in ws if tw == x]) for x in wt_u])
            pos = np.searchsorted(wt_u, first + np.arange(hours) * H, "right") - 1
            w_hour = np.where(pos >= 0, w_mean[np.maximum(pos, 0)], np.nan)
        urine[i] = Urine(first, vol, w_hour)
    rrt = {
        index[r["patient_id"]] for r in _read_csv(folder / "rrt.csv") if r["patient_id"] in index
    }
    return Cohort(ids=ids, stays=stays, t=t, scr=v, w_pyaki=[demo.get(s) for s in stays],
                  urine=urine, rrt=rrt, outside=outside)  # fmt: skip


# ----------------------------------------------------------------------------- reference models
def _range_min(v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """min(v[lo:hi]) for every pair (inf when empty), with a sparse table: O(n log n)."""
    out = np.full(len(lo), np.inf)
    size = hi - lo
    ok = size > 0
    if not ok.any():
        return out
    table = [v]
    while 2 * len(table[-1]) > len(v) and (1 << len(table)) <= len(v):
        half = 1 << (len(table) - 1)
        table.append(np.minimum(table[-1][:-half], table[-1][half:]))
    level = np.zeros(len(lo), dtype=np.int64)
    level[ok] = np.floor(np.log2(size[ok])).astype(np.int64)
    for k in np.unique(level[ok]):
        m = ok & (level == k)
        out[m] = np.minimum(table[k][lo[m]], table[k][hi[m] - (1 << k)])
    return out


def creat_stage(t: np.ndarray, v: np.ndarray, flags: frozenset[str], has_weight: bool) -> int:
    """Maximum creatinine KDIGO stage of one patient under the given pyAKI deviations.

    No flag: trialsieve's rules (:mod:`trialsieve.kidney.aki`, KDIGO 2012 Table 2: minimum over
    [t-48 h, t) and [t-7 d, t), else the median over [t-365 d, t-7 d) as baseline; stage 3 at
    >= 353.6 umol/L only with a rise). Each flag switches one pyAKI 1.0.13 behaviour on (see the
    module docstring).
    """
    if "no-weight-no-creatinine" in flags and not has_weight:
        return 0
    t = np.asarray(t, dtype=np.int64)
    v = np.asarray(v, dtype=float)
    hourly = "hourly-binning" in flags
    if hourly:  # CreatininePreProcessor: resample("1h").mean()
        hb, inv = np.unique(t // H, return_inverse=True)
        v = np.bincount(inv, weights=v) / np.bincount(inv)
        t = hb * H
    if "72h-carry-forward" in flags and len(t) > 1:  # ffill(limit=72) on the hourly grid
        steps = np.minimum(72, (np.diff(t) - 1) // H)
        src = np.repeat(np.arange(len(t) - 1), steps)
        k = np.arange(len(src)) - np.repeat(np.cumsum(steps) - steps, steps) + 1
        t = np.concatenate([t, t[src] + k.astype(np.int64) * H])
        v = np.concatenate([v, v[src]])
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
    side = "right" if hourly else "left"  # pandas rolling("2d") on whole hours: (t - 48 h, t]
    before = np.searchsorted(t, t, "left")  # candidates strictly earlier than t
    min48 = _range_min(v, np.searchsorted(t, t - 48 * H, side), before)
    min7 = _range_min(v, np.searchsorted(t, t - 7 * DAY, side), before)
    has48, has7 = np.isfinite(min48), np.isfinite(min7)
    base = np.where(has7, min7, np.nan)
    if "no-median-baseline" not in flags:  # trialsieve: median over [t-365 d, t-7 d)
        lo = np.searchsorted(t, t - 365 * DAY, "left")
        hi = np.searchsorted(t, t - 7 * DAY, "left")
        for j in np.flatnonzero(~has7 & (hi > lo)):
            base[j] = np.median(v[lo[j] : hi[j]])
    hasb = ~np.isnan(base)
    b = np.where(hasb, base, 1.0)
    m48 = np.where(has48, min48, 0.0)
    if "mgdl-isclose" in flags:  # utils.approx_gte in mg/dL

        def ge(x: np.ndarray, y: np.ndarray | float) -> np.ndarray:
            return (x >= y) | np.isclose(x, y)

        absr = has48 & ge(v - m48, 0.3)
        ratio = v / b
        rs = np.select([hasb & ge(ratio, k) for k in (3.0, 2.0, 1.5)], [3, 2, 1], default=0)
        high = ge(v, 4.0)
    else:  # trialsieve: umol/L with EPS in favour of the threshold
        mu, mb = v * UMOL, b * UMOL
        absr = has48 & (mu - m48 * UMOL >= 26.5 - EPS)
        rs = np.select([hasb & (mu >= k * mb - EPS) for k in (3.0, 2.0, 1.5)], [3, 2, 1], default=0)
        high = mu >= 353.6 - EPS
    high3 = high if "scr>=4-stage3" in flags else high & (absr | (rs >= 1))
    stage = np.maximum.reduce([absr.astype(int), rs, np.where(high3, 3, 0)])
    return int(stage.max()) if len(stage) else 0


def urine_stage(uo: Urine, w_pyaki: float | None, flags: frozenset[str]) -> int:
    """Maximum urine-output KDIGO stage of one hourly series (NaN = hour not charted).

    No flag: trialsieve's rules (:mod:`trialsieve.kidney.urine`; KDIGO 2012 Table 2: every hour
    < 0.5 mL/kg/h for 6 h -> 1, 12 h -> 2, < 0.3 for 24 h or 12 h of charted 0 mL -> 3; an
    uncharted hour or an hour without a prior weight ends a run, except 0 mL). Each flag
    switches one pyAKI 1.0.13 behaviour on.
    """
    if "uo-single-weight" in flags:  # one demographics weight per stay; no row: probe skipped
        if w_pyaki is None:
            return 0
        w = np.full(len(uo.vol), w_pyaki)
    else:
        w = uo.w_hour
    x = uo.vol.astype(float).copy()
    if "uo-zero-missing" in flags:  # df[df.urineoutput == 0] = None
        x[x == 0] = np.nan
    if "uo-gap-interpolation" in flags:  # divide by (missing run before)+1, bfill(limit=6)
        miss = np.isnan(x)
        run = np.zeros(len(x))
        for j in range(1, len(x)):
            run[j] = run[j - 1] + 1 if miss[j - 1] else 0
        x = x / (np.minimum(run, 6) + 1)
        nxt = np.full(len(x), np.nan)
        dist = np.full(len(x), np.inf)
        for j in range(len(x) - 1, -1, -1):
            if not np.isnan(x[j]):
                nxt[j], dist[j] = x[j], 0
            elif j + 1 < len(x):
                nxt[j], dist[j] = nxt[j + 1], dist[j + 1] + 1
        x = np.where(np.isnan(x) & (dist <= 6), nxt, x)
    rate = np.where(x == 0, 0.0, x / w)
    mean = "uo-rolling-mean" in flags

    def agg(n: int) -> np.ndarray:
        if len(rate) < n:
            return np.zeros(0)
        win = sliding_window_view(rate, n)
        out = win.mean(axis=1) if mean else np.round(win, 9).max(axis=1)
        return out[~np.isnan(win).any(axis=1)]

    a6, a12, a24 = agg(6), agg(12), agg(24)
    stage = 0
    if (a6 < 0.5).any():
        stage = 1
    if (a12 < 0.5).any():
        stage = 2
    if (a24 < 0.3).any():
        stage = 3
    if "uo-anuria<0.1" in flags:
        if (a12 < 0.1).any():
            stage = 3
    elif len(x) >= 12 and (sliding_window_view(x, 12) == 0).all(axis=1).any():
        stage = 3
    return stage


def _subsets(names: tuple[str, ...]) -> list[frozenset[str]]:
    return [frozenset(c) for r in range(len(names) + 1) for c in itertools.combinations(names, r)]


def explain(
    c: Cohort, ours: dict[str, int], theirs: dict[str, int]
) -> tuple[Counter[str], list[str], dict[str, int]]:
    """Attribute every disagreement; return counts per explanation, unexplained ids, checks."""
    counts: Counter[str] = Counter()
    unexplained: list[str] = []
    checks = {"model_matches_trialsieve": 0, "model_matches_pyaki": 0, "compared": 0}
    all_c, all_u = frozenset(CREAT_FLAGS), frozenset(URINE_FLAGS)
    combos = sorted(itertools.product(_subsets(CREAT_FLAGS), _subsets(URINE_FLAGS)),
                    key=lambda p: len(p[0]) + len(p[1]))  # fmt: skip
    order = CREAT_FLAGS + URINE_FLAGS
    for i, pid in enumerate(c.ids):
        if pid not in theirs or pid not in ours:
            continue
        checks["compared"] += 1
        if i in c.outside:
            if ours[pid] != theirs[pid]:
                unexplained.append(f"{pid} (outside the reference model: {c.outside[i]})")
            continue
        uo, wp, rrt = c.urine.get(i), c.w_pyaki[i], 3 if i in c.rrt else 0
        cmemo: dict[frozenset[str], int] = {}
        umemo: dict[frozenset[str], int] = {}

        def cs(f: frozenset[str], i: int = i, wp: float | None = wp,
               m: dict[frozenset[str], int] = cmemo) -> int:  # fmt: skip
            if f not in m:
                m[f] = creat_stage(c.t[i], c.scr[i], f, wp is not None)
            return m[f]

        def us(f: frozenset[str], uo: Urine | None = uo, wp: float | None = wp,
               m: dict[frozenset[str], int] = umemo) -> int:  # fmt: skip
            if f not in m:
                m[f] = urine_stage(uo, wp, f) if uo is not None else 0
            return m[f]

        m_ours = max(cs(frozenset()), us(frozenset()), rrt)
        m_theirs = max(cs(all_c), us(all_u), rrt)
        checks["model_matches_trialsieve"] += m_ours == ours[pid]
        checks["model_matches_pyaki"] += m_theirs == theirs[pid]
        if ours[pid] == theirs[pid]:
            continue
        if m_ours != ours[pid] or m_theirs != theirs[pid]:
            unexplained.append(f"{pid} (reference model does not reproduce an engine)")
            continue
        hit = next((fc | fu for fc, fu in combos if max(cs(fc), us(fu), rrt) == theirs[pid]), None)
        if hit is None:
            unexplained.append(f"{pid} (no combination of deviations)")
            continue
        label = " + ".join(f for f in order if f in hit)
        arrow = "pyAKI higher" if theirs[pid] > ours[pid] else "pyAKI lower"
        counts[f"{label} [{arrow}]"] += 1
    return counts, unexplained, checks


# ----------------------------------------------------------------------------- runs
def timed(cmd: list[str], log: Path) -> tuple[float, float]:
    """Wall and CPU (user + sys) seconds of one whole subprocess; exits when it fails."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with log.open("w") as err:
        rc = subprocess.run(cmd, stdout=err, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        sys.exit(f"failed ({rc}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def read_stage(path: Path, col: str) -> dict[str, int]:
    """patient_id -> stage (an empty cell, no staged hour, counts as 0)."""
    with path.open() as f:
        return {r["patient_id"]: int(float(r[col] or 0)) for r in csv.DictReader(f)}


def run_size(n: int, args: argparse.Namespace, py: Path, work: Path) -> dict[str, object]:
    """Generate, run both engines, compare; print and return the figures."""
    print(f"\n=== {n:,} patients x {PER_PATIENT} creatinine values, source {args.source} ===",
          flush=True)  # fmt: skip
    t0 = time.perf_counter()
    folder = work / f"{args.source}-n{n}"
    if args.source == "synth":
        shutil.rmtree(folder, ignore_errors=True)
        run_synth(n, args.seed, folder)
        ts, pk = folder, folder / "pyaki"
        c = load_synth(folder)
    else:
        c = generate(n, args.seed)
        ts, pk = write_inputs(c, folder)
    n_cr = sum(len(x) for x in c.t)
    n_uo = sum(int((~np.isnan(u.vol)).sum()) for u in c.urine.values())
    print(f"generated in {time.perf_counter() - t0:.1f} s: {n_cr:,} creatinine, {len(c.urine):,} "
          f"patients with {n_uo:,} hourly urine rows, {len(c.rrt):,} with RRT")  # fmt: skip
    print(f"inputs: {folder}")

    ts_cmd = [str(TRIALSIEVE), "aki", "--creatinine", str(ts / "creatinine.csv"),
              "--urine", str(ts / "urine.csv"), "--weights", str(ts / "weights.csv"),
              "--out", str(ts / "results.csv"), "--summary", str(ts / "summary.csv")]  # fmt: skip
    if c.rrt:
        ts_cmd += ["--rrt", str(ts / "rrt.csv")]
    before = [timed(ts_cmd, folder / "trialsieve.log") for _ in range(args.ts_runs)]
    print("trialsieve aki : " + ", ".join(f"{w:.2f}" for w, _ in before) + " s wall (before "
          "pyAKI)", flush=True)  # fmt: skip

    budget = args.pyaki_budget_s if args.pyaki_mode == "loop" else 0
    pk_cmd = [str(py), str(RUNNER), "--dir", str(pk), "--out", str(pk / "max_stage.csv"),
              "--meta", str(pk / "meta.json"), "--mode", args.pyaki_mode,
              "--budget-s", str(budget)]  # fmt: skip
    t_pk, cpu_pk = timed(pk_cmd, folder / "pyaki.log")
    after = [timed(ts_cmd, folder / "trialsieve.log") for _ in range(args.ts_runs)]
    runs = sorted(before + after)
    # the upper median of an even count: the slower of the two middle runs
    t_ts, cpu_ts = runs[len(runs) // 2]
    print(f"trialsieve aki : {t_ts:8.2f} s wall, {cpu_ts:7.2f} s CPU (median of {len(runs)} runs; "
          "after pyAKI: " + ", ".join(f"{w:.2f}" for w, _ in after) + " s)")  # fmt: skip
    meta = json.loads((pk / "meta.json").read_text())
    done, total = meta["stays_done"], meta["stays_total"]
    if done < total:
        est = t_pk - meta["process_s"] + meta["process_s"] * total / done
        per = meta["process_s"] / done * 1e3
        print(f"pyAKI ({args.pyaki_mode:4s})   : {t_pk:8.2f} s wall for {done:,}/{total:,} "
              f"patients (budget {budget:.0f} s reached; preprocess + probe {per:.1f} "
              f"ms/patient) "
              f"-> EXTRAPOLATED {est:.0f} s for all {total:,}")  # fmt: skip
    else:
        est = t_pk
        print(f"pyAKI ({args.pyaki_mode:4s})   : {t_pk:8.2f} s wall, {cpu_pk:7.2f} s CPU (read "
              f"{meta['read_s']:.1f}, preprocess {meta['preprocess_s']:.1f}, probe "
              f"{meta['probe_s']:.1f} s)")  # fmt: skip
    ratio = est / t_ts
    tag = " (pyAKI time extrapolated)" if done < total else ""
    cpu = f"; CPU-time ratio {cpu_pk / cpu_ts:.0f}x" if done == total else ""
    print(
        f"ratio          : trialsieve {ratio:.1f}x faster in wall time{tag} (target >= 100x "
        f"at 10,000){cpu}"
    )
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        print(
            f"                 note: 1-min load average {load:.1f} on {os.cpu_count()} cores "
            "(other processes); wall times are inflated"
        )

    ours = read_stage(ts / "summary.csv", "max_kdigo_stage")
    by_stay = dict(zip(c.stays, c.ids, strict=True))
    theirs = {by_stay[int(k)]: v for k, v in read_stage(pk / "max_stage.csv", "max_stage").items()}
    common = [p for p in theirs if p in ours]
    agree = sum(ours[p] == theirs[p] for p in common)
    print(f"\nper-patient max KDIGO stage, {len(common):,} patients: agree {agree:,} "
          f"({100 * agree / max(1, len(common)):.1f} %)")  # fmt: skip
    table = Counter((ours[p], theirs[p]) for p in common)
    print("  trialsieve \\ pyAKI    0      1      2      3")
    for a in range(4):
        print(f"  stage {a}        " + " ".join(f"{table[(a, b)]:6d}" for b in range(4)))

    t1 = time.perf_counter()
    counts, unexplained, checks = explain(c, ours, theirs)
    k = checks["compared"]
    m_ts, m_pk = checks["model_matches_trialsieve"], checks["model_matches_pyaki"]
    print(f"\nreference model reproduces trialsieve for {m_ts:,}/{k:,}"
          f" and pyAKI for {m_pk:,}/{k:,} patients "
          f"({time.perf_counter() - t1:.1f} s)")  # fmt: skip
    print(
        f"disagreements ({len(common) - agree:,}) by explanation "
        "(smallest set of pyAKI deviations that reproduces pyAKI's stage):"
    )
    for label, m in counts.most_common():
        new = [f for f in label.split(" [")[0].split(" + ") if f not in IN_STACK_MD]
        note = "  (not in STACK.md: " + ", ".join(new) + ")" if new else ""
        print(f"  {m:6d}  {label}{note}")
    print(
        f"  {len(unexplained):6d}  UNEXPLAINED"
        + (": " + ", ".join(unexplained[:10]) if unexplained else "")
    )
    return {"n": n, "trialsieve_s": t_ts, "trialsieve_cpu_s": cpu_ts, "pyaki_s": t_pk,
            "pyaki_cpu_s": cpu_pk, "pyaki_est_s": est, "ratio": ratio, "agree": agree,
            "compared": len(common), "unexplained": len(unexplained)}  # fmt: skip


def main() -> None:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000", help="comma-separated patient counts")
    ap.add_argument("--quick", action="store_true", help="100 patients only")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument(
        "--pyaki-mode",
        choices=("loop", "api"),
        default="loop",
        help="loop: process_stay per stay (linear); api: process_stays() (quadratic)",
    )
    ap.add_argument(
        "--pyaki-budget-s",
        type=float,
        default=900.0,
        help="stop pyAKI's per-stay loop after this many seconds and extrapolate",
    )
    ap.add_argument(
        "--ts-runs",
        type=int,
        default=3,
        help="runs of trialsieve aki before pyAKI, and as many after it (the median counts)",
    )
    ap.add_argument("--keep", type=Path, help="write the inputs and outputs here (kept)")
    ap.add_argument(
        "--source",
        choices=("synth", "bench"),
        default="synth",
        help="synth: `trialsieve synth --format pyaki` (default; multi-year histories); bench: "
        "this script's ICU-stay generator (pyAKI's fastest case)",
    )
    args = ap.parse_args()
    sizes = [100] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    if not TRIALSIEVE.exists():
        sys.exit(f"{TRIALSIEVE} missing: install trialsieve in .venv first")
    py = ensure_pyaki_venv()
    # both tools run from bytecode: pip byte-compiled pyAKI's package when it installed it;
    # trialsieve is installed editable, whose bytecode Python writes on first import, unless
    # PYTHONDONTWRITEBYTECODE is set (as on the development machine): every timed run would
    # then compile its modules again (~15 ms)
    compileall.compile_dir(ROOT / "src" / "trialsieve", quiet=1)
    work = args.keep or Path(tempfile.mkdtemp(prefix="aki_vs_pyaki_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        rows = [run_size(n, args, py, work) for n in sizes]
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\nsummary: N | trialsieve wall s (CPU s) | pyAKI wall s (CPU s) | wall ratio | "
          "agreement | unexplained")  # fmt: skip
    for r in rows:
        print(
            f"  {r['n']:>7,} | {r['trialsieve_s']:7.2f} ({r['trialsieve_cpu_s']:6.2f}) | "
            f"{r['pyaki_est_s']:8.1f} ({r['pyaki_cpu_s']:7.1f}) | {r['ratio']:5.0f}x | "
            f"{r['agree']}/{r['compared']} | {r['unexplained']}"
        )


if __name__ == "__main__":
    main()
