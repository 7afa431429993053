"""The clinical simulation behind ``trialsieve synth``: one block of patients at a time.

Pure numpy (no I/O): a :class:`Population` of per-patient state (demography, diseases, CKD
trajectory, albuminuria, body and metabolic means) is drawn by :func:`draw_population`; the
``add_*`` functions turn it into coded events (conditions, prescriptions, outpatient results,
admissions with AKI, ICU urine output and dialysis). Every rate, with its source, is in
:mod:`trialsieve.synth.rates`; the kidney curves are in :mod:`trialsieve.synth.trajectories`.
All times are epoch seconds (UTC) and every event starts before the screening instant ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from trialsieve.synth import rates as R
from trialsieve.synth.concepts import ci
from trialsieve.synth.trajectories import (
    YEAR_S,
    aki_factor,
    creatinine_for_egfr,
    cystatin_for_egfr,
    egfr_at,
    urine_rate,
)
from trialsieve.units import ANALYTES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

DAY = 86400.0
HOUR = 3600.0

STATUSES = ("final", "active", "resolved", "completed", "in-progress", "finished")
ST = {s: i for i, s in enumerate(STATUSES)}


@dataclass
class Events:
    """Column lists of the events of one block (block-local patient index)."""

    pid: list[IntArray] = field(default_factory=list)
    concept: list[IntArray] = field(default_factory=list)
    start: list[FloatArray] = field(default_factory=list)
    end: list[FloatArray] = field(default_factory=list)
    value: list[FloatArray] = field(default_factory=list)
    dose: list[FloatArray] = field(default_factory=list)
    status: list[IntArray] = field(default_factory=list)
    res: list[IntArray] = field(default_factory=list)
    n_res: int = 0

    def add(
        self,
        pid: IntArray,
        concept: int | IntArray,
        start: FloatArray,
        *,
        end: FloatArray | None = None,
        value: FloatArray | None = None,
        dose: FloatArray | float | None = None,
        status: str | IntArray = "final",
        res: IntArray | None = None,
    ) -> IntArray:
        """Append rows; return their resource ids (pass ``res`` to share a resource: BP panel)."""
        n = len(pid)
        if n == 0:
            return np.zeros(0, np.int64)
        full = np.full
        self.pid.append(np.asarray(pid, np.int64))
        self.concept.append(np.broadcast_to(np.asarray(concept, np.int64), (n,)).copy())
        self.start.append(np.asarray(start, np.float64))
        self.end.append(full(n, np.nan) if end is None else np.asarray(end, np.float64))
        self.value.append(full(n, np.nan) if value is None else np.asarray(value, np.float64))
        d = np.nan if dose is None else dose
        self.dose.append(np.broadcast_to(np.asarray(d, np.float64), (n,)).copy())
        st = np.full(n, ST[status]) if isinstance(status, str) else np.asarray(status, np.int64)
        self.status.append(st.astype(np.int64))
        if res is None:
            res = np.arange(self.n_res, self.n_res + n, dtype=np.int64)
            self.n_res += n
        self.res.append(res)
        return res


def _rep(counts: IntArray) -> IntArray:
    """Owner index of each expanded row: [0,0,1,2,2,2] for counts [2,1,3]."""
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def _within(counts: IntArray) -> IntArray:
    """Position of each expanded row within its owner: [0,1,0,0,1,2] for counts [2,1,3]."""
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


def _pick(rng: np.random.Generator, options: list[str], weights: list[float], n: int) -> IntArray:
    """Concept indices drawn from ``options`` with ``weights``."""
    idx = np.array([ci(o) for o in options], np.int64)
    w = np.asarray(weights, np.float64)
    return idx[rng.choice(len(options), size=n, p=w / w.sum())]


# ----------------------------------------------------------------------------------------------
@dataclass
class Population:
    """Per-patient state of one block."""

    n: int
    age: FloatArray
    female: BoolArray
    birth_s: FloatArray
    start_s: FloatArray
    conv: BoolArray
    no_labs: BoolArray
    flags: dict[str, BoolArray]
    onset: dict[str, FloatArray]
    egfr_end: FloatArray
    slope: FloatArray
    uacr_end: FloatArray
    uacr_growth: FloatArray
    weight: FloatArray
    sbp_mean: FloatArray
    hba1c_mean: FloatArray
    lipids: dict[str, FloatArray]
    hb_mean: FloatArray


def draw_population(rng: np.random.Generator, n: int, t: float) -> Population:
    age = 18.0 + 77.0 * rng.beta(*R.AGE_BETA, size=n)
    female = rng.random(n) < R.FEMALE.value
    birth_s = t - age * YEAR_S - rng.random(n) * DAY
    hist = rng.uniform(*R.HISTORY_YEARS, size=n)
    hist = np.minimum(hist, np.maximum(age - 17.5, 0.5))
    start_s = t - hist * YEAR_S
    decades = (age - 50.0) / 10.0

    def draw(p: float, rr: float = 1.0) -> BoolArray:
        return rng.random(n) < np.minimum(p * np.power(rr, decades), 0.95)

    def onset_within(years: FloatArray | float) -> FloatArray:
        yrs = np.minimum(np.asarray(years, np.float64) * np.ones(n), np.maximum(age - 18.0, 0.2))
        return t - rng.random(n) * yrs * YEAR_S - DAY

    flags: dict[str, BoolArray] = {}
    onset: dict[str, FloatArray] = {}
    flags["t1d"] = draw(R.DIABETES_T1.value)
    flags["t2d"] = draw(R.DIABETES_T2.value, 1.35) & ~flags["t1d"]
    flags["htn"] = draw(R.HYPERTENSION.value, 1.45)
    diabetic = flags["t1d"] | flags["t2d"]
    onset["diabetes"] = onset_within(np.clip(age - 25.0, 1.0, 20.0))
    onset["htn"] = onset_within(15.0)
    for c in R.CONDITIONS:
        f = draw(c.prevalence.value, c.rr_decade)
        if c.female_only:
            f &= female
        f &= age <= c.max_age
        flags[c.name] = f
        onset[c.name] = onset_within(c.onset_years)
    # CKD etiology: diabetic, hypertensive, glomerular / polycystic (from the table), other
    dkd = diabetic & (rng.random(n) < R.DKD_GIVEN_DIABETES.value)
    htn_ckd = flags["htn"] & ~dkd & (rng.random(n) < R.HTN_NEPHROPATHY_GIVEN_HTN.value)
    glom = flags["glomerulonephritis"] | flags["lupus_nephritis"] | flags["adpkd"]
    other_ckd = ~(dkd | htn_ckd | glom) & draw(0.02, 1.5)
    ckd = dkd | htn_ckd | glom | other_ckd | flags["kidney_transplant"]
    flags.update(dkd=dkd, htn_ckd=htn_ckd, other_ckd=other_ckd, ckd=ckd, diabetic=diabetic)
    # CKD stage and eGFR at the screening instant
    names = [s[0] for s in R.CKD_STAGES]
    probs = np.array([s[1] for s in R.CKD_STAGES])
    stage = rng.choice(len(names), size=n, p=probs / probs.sum())
    lo = np.array([s[2] for s in R.CKD_STAGES])[stage]
    hi = np.array([s[3] for s in R.CKD_STAGES])[stage]
    normal_egfr = np.clip(rng.normal(112.0 - 0.85 * np.maximum(age - 25.0, 0.0), 11.0), 62.0, 128.0)
    egfr_end = np.where(ckd, rng.uniform(lo, hi), normal_egfr)
    slope = rng.uniform(*R.EGFR_SLOPE_NORMAL, size=n)
    slope = np.where(dkd, rng.uniform(*R.EGFR_SLOPE_DKD, size=n), slope)
    slope = np.where(htn_ckd, rng.uniform(*R.EGFR_SLOPE_HTN, size=n), slope)
    slope = np.where(glom | other_ckd, rng.uniform(*R.EGFR_SLOPE_OTHER_CKD, size=n), slope)
    flags["g5"] = ckd & (egfr_end < 15.0)
    flags["dialysis"] = flags["g5"] & (rng.random(n) < R.ESRD_DIALYSIS_GIVEN_G5.value)
    onset["ckd"] = onset_within(np.clip((hist + 0.5), 1.0, 12.0))
    # albuminuria: UACR at the screening instant (mg/g) and its yearly log growth
    a3 = dkd & (rng.random(n) < R.ALBUMINURIA_A3_GIVEN_DKD.value)
    nephrotic = a3 & (rng.random(n) < R.NEPHROTIC_GIVEN_A3.value)
    uacr = np.exp(rng.normal(np.log(9.0), 0.6, n))
    uacr = np.where(ckd, np.exp(rng.uniform(np.log(35.0), np.log(290.0), n)), uacr)
    uacr = np.where(a3 | ((htn_ckd | glom) & (rng.random(n) < 0.5)),
                    np.exp(rng.uniform(np.log(320.0), np.log(1800.0), n)), uacr)  # fmt: skip
    uacr = np.where(nephrotic, np.exp(rng.uniform(np.log(2100.0), np.log(6000.0), n)), uacr)
    flags["a3"], flags["nephrotic"] = a3 | (uacr > 300.0), nephrotic
    growth = np.where(ckd, rng.uniform(0.05, 0.35, n), 0.0)
    # body and metabolic
    weight = np.where(female, rng.lognormal(np.log(68.0), 0.18, n),
                      rng.lognormal(np.log(80.0), 0.17, n))  # fmt: skip
    sbp = np.where(flags["htn"], rng.normal(142.0, 13.0, n), rng.normal(121.0, 9.0, n))
    hba1c = np.where(diabetic, np.clip(rng.normal(7.5, 1.2, n), 5.8, 13.5),
                     np.clip(rng.normal(5.4, 0.3, n), 4.4, 6.3))  # fmt: skip
    lipids = {
        "ldl": np.clip(rng.normal(3.0, 0.85, n), 0.8, 7.5),
        "hdl": np.clip(rng.normal(np.where(female, 1.5, 1.2), 0.3), 0.5, 3.0),
        "triglycerides": np.clip(rng.lognormal(np.log(1.4), 0.5, n), 0.3, 25.0),
    }
    lipids["cholesterol_total"] = lipids["ldl"] + lipids["hdl"] + lipids["triglycerides"] / 2.2
    hb = np.where(female, rng.normal(133.0, 10.0, n), rng.normal(147.0, 11.0, n))
    return Population(
        n=n, age=age, female=female, birth_s=birth_s, start_s=start_s,
        conv=rng.random(n) < R.CONVENTIONAL_UNITS.value, no_labs=rng.random(n) < R.NO_LABS.value,
        flags=flags, onset=onset, egfr_end=egfr_end, slope=slope, uacr_end=uacr,
        uacr_growth=growth, weight=weight, sbp_mean=sbp, hba1c_mean=hba1c, lipids=lipids,
        hb_mean=hb,
    )  # fmt: skip


def _age_at(p: Population, pid: IntArray, t: FloatArray) -> FloatArray:
    return (t - p.birth_s[pid]) / YEAR_S


def _creat(p: Population, pid: IntArray, t: FloatArray, t_end: float) -> FloatArray:
    """Creatinine (umol/L) on the patient's eGFR trajectory at ``t`` (no noise)."""
    e = egfr_at(t, np.full(len(t), t_end), p.egfr_end[pid], p.slope[pid])
    return creatinine_for_egfr(e, _age_at(p, pid, t), p.female[pid])


def _egfr(p: Population, pid: IntArray, t: FloatArray, t_end: float) -> FloatArray:
    return egfr_at(t, np.full(len(t), t_end), p.egfr_end[pid], p.slope[pid])


# ----------------------------------------------------------------------------------------------
def add_conditions(rng: np.random.Generator, p: Population, ev: Events, t: float) -> None:
    f, on = p.flags, p.onset
    ids = np.arange(p.n, dtype=np.int64)

    def add(mask: BoolArray, concept: int | IntArray, start: FloatArray) -> None:
        c = concept if isinstance(concept, int) else concept[mask]
        ev.add(ids[mask], c, start[mask], status="active")

    t2 = f["t2d"]
    add(t2 & ~f["dkd"], ci("cond:E11.9"), on["diabetes"])
    add(f["t1d"] & ~f["dkd"], ci("cond:E10.9"), on["diabetes"])
    add(t2 & f["dkd"], ci("cond:E11.22"), on["ckd"])
    add(f["t1d"] & f["dkd"], ci("cond:E10.22"), on["ckd"])
    add(t2 & f["dkd"] & (rng.random(p.n) < 0.4), ci("cond:E11.21"), on["ckd"])
    add(f["diabetic"] & (p.hba1c_mean > 8.5), ci("cond:E11.65"), t - rng.random(p.n) * YEAR_S)
    add(f["htn"] & ~f["htn_ckd"], ci("cond:I10"), on["htn"])
    hcode = np.where(f["g5"], ci("cond:I12.0"), ci("cond:I12.9")).astype(np.int64)
    add(f["htn_ckd"], hcode, on["ckd"])
    # CKD stage code, recorded when the CKD diagnosis was made (coded in ~80 % of CKD)
    e = p.egfr_end
    stage_code = np.select(
        [f["dialysis"], e < 15, e < 30, e < 45, e < 60, e < 90],
        [ci("cond:N18.6"), ci("cond:N18.5"), ci("cond:N18.4"), ci("cond:N18.32"),
         ci("cond:N18.31"), ci("cond:N18.2")], ci("cond:N18.1"),
    ).astype(np.int64)  # fmt: skip
    add(f["ckd"] & (rng.random(p.n) < 0.8), stage_code, on["ckd"])
    dial_start = t - rng.uniform(0.1, 4.0, p.n) * YEAR_S
    dial_start = np.maximum(dial_start, p.start_s + DAY)
    add(f["dialysis"], ci("cond:Z99.2"), dial_start)
    for c in R.CONDITIONS:
        m = f[c.name]
        k = int(m.sum())
        if not k:
            continue
        codes = _pick(rng, [f"cond:{code}" for code, _, _ in c.codes], [w for *_, w in c.codes], k)
        resolved = rng.random(k) < c.resolved
        start = on[c.name][m]
        end = np.where(resolved, np.minimum(start + rng.uniform(60, 240, k) * DAY, t - DAY), np.nan)
        status = np.where(resolved, ST["resolved"], ST["active"])
        ev.add(ids[m], codes, start, end=end, status=status)
    # dialysis sessions of maintenance dialysis: weekly record over the last months
    m = f["dialysis"]
    weeks = np.where(m, np.minimum(((t - dial_start) / (7 * DAY)).astype(np.int64), 26), 0)
    own = _rep(weeks)
    st = t - (_within(weeks) + 1) * 7 * DAY + 0.3 * DAY
    ev.add(own, ci("proc:hemodialysis"), st, end=st + 4 * HOUR, status="completed")
    # kidney biopsy: diabetic nephropathy (some) and glomerular disease (most)
    bx = (f["dkd"] & (rng.random(p.n) < R.KIDNEY_BIOPSY_GIVEN_DKD.value)) | (
        (f["glomerulonephritis"] | f["lupus_nephritis"]) & (rng.random(p.n) < 0.8)
    )
    bx_t = np.maximum(on["ckd"], t - rng.uniform(0.2, 12.0, p.n) * YEAR_S)
    ev.add(ids[bx], ci("proc:kidney_biopsy"), bx_t[bx], status="completed")


def _prescriptions(
    ev: Events, pid: IntArray, concept: int, start: FloatArray, dose: float, t: float,
    period_days: float = 180.0,
) -> None:  # fmt: skip
    """Chronic drug: one prescription every ``period_days`` from ``start`` up to the instant."""
    count = np.ceil((t - DAY - start) / (period_days * DAY)).astype(np.int64)
    count = np.clip(count, 0, 40)
    own = _rep(count)
    s = start[own] + _within(count) * period_days * DAY
    e = np.minimum(s + period_days * DAY, t - HOUR)
    status = np.where(e >= t - 2 * HOUR, ST["active"], ST["completed"])
    ev.add(pid[own], concept, s, end=e, dose=dose, status=status)


def add_drugs(rng: np.random.Generator, p: Population, ev: Events, t: float) -> None:
    f, on, n = p.flags, p.onset, p.n
    ids = np.arange(n, dtype=np.int64)
    first = np.maximum(p.start_s, t - 3 * YEAR_S)  # prescriptions kept for the last 3 years

    def chronic(mask: BoolArray, name: str, dose: float, since: FloatArray) -> None:
        s = np.maximum(first, since)[mask] + rng.random(int(mask.sum())) * 30 * DAY
        _prescriptions(ev, ids[mask], ci(f"med:{name}"), s, dose, t)

    r = rng.random
    egfr_ok = p.egfr_end >= 30.0
    chronic(f["t2d"] & egfr_ok & (r(n) < R.METFORMIN_GIVEN_T2D.value), "metformin", 1000.0,
            on["diabetes"])  # fmt: skip
    chronic(f["t1d"] | (f["t2d"] & (r(n) < R.INSULIN_GIVEN_T2D.value)), "insulin", 20.0,
            on["diabetes"])  # fmt: skip
    sglt2 = f["t2d"] & (p.egfr_end >= 20.0) & (r(n) < R.SGLT2_GIVEN_T2D.value * (1 + f["ckd"]))
    half = r(n) < 0.5
    chronic(sglt2 & half, "dapagliflozin", 10.0, on["diabetes"])
    chronic(sglt2 & ~half, "empagliflozin", 10.0, on["diabetes"])
    ras = (f["htn"] | f["dkd"]) & (r(n) < R.RAS_GIVEN_HTN_OR_DKD.value)
    chronic(ras & half, "ramipril", 5.0, on["htn"])
    chronic(ras & ~half, "losartan", 50.0, on["htn"])
    chronic((f["diabetic"] | (p.age > 60)) & (r(n) < R.STATIN_GIVEN_RISK.value), "atorvastatin",
            20.0, p.start_s)  # fmt: skip
    tx = f["kidney_transplant"] | f["other_transplant"]
    chronic(tx, "tacrolimus", 2.0, on["kidney_transplant"])
    chronic(tx | ((f["lupus_nephritis"] | f["anca_vasculitis"]) & (r(n) < 0.6)), "mycophenolate",
            1000.0, on["glomerulonephritis"])  # fmt: skip
    chronic(f["rheumatoid_arthritis"] & (r(n) < 0.6), "methotrexate", 15.0,
            on["rheumatoid_arthritis"])  # fmt: skip
    long_gc = (r(n) < R.GC_LONG_TERM.value) | (tx & (r(n) < 0.5)) | f["lupus_nephritis"]
    chronic(long_gc, "prednisolone", 7.5, p.start_s)
    # short glucocorticoid courses (5-21 days, prednisone 60 % / prednisolone 40 %)
    hist_y = (t - p.start_s) / YEAR_S
    k = rng.poisson(R.GC_COURSES_PER_YEAR.value * hist_y)
    own = _rep(k)
    m = len(own)
    s = p.start_s[own] + r(m) * (t - DAY - p.start_s[own])
    s = np.floor(s / DAY) * DAY + 9 * HOUR
    days = rng.integers(5, 22, m).astype(np.float64)
    e = np.minimum(s + days * DAY, t - HOUR)
    drug = _pick(rng, ["med:prednisone", "med:prednisolone"], [0.6, 0.4], m)
    dose = rng.choice(np.array([5.0, 10.0, 20.0, 30.0, 40.0, 60.0]), m)
    status = np.where(e >= t - 2 * HOUR, ST["active"], ST["completed"])
    ev.add(own, drug, s, end=e, dose=dose, status=status)


# ----------------------------------------------------------------------------------------------
@dataclass
class Labs:
    """Lab/vital draws before they become events: (pid, time, analyte, value, extra flag)."""

    pid: list[IntArray] = field(default_factory=list)
    t: list[FloatArray] = field(default_factory=list)
    analyte: list[str] = field(default_factory=list)
    value: list[FloatArray] = field(default_factory=list)
    inpatient: list[bool] = field(default_factory=list)

    def add(self, analyte: str, pid: IntArray, t: FloatArray, value: FloatArray,
            inpatient: bool = False) -> None:  # fmt: skip
        if len(pid):
            self.pid.append(pid)
            self.t.append(t)
            self.analyte.append(analyte)
            self.value.append(value)
            self.inpatient.append(inpatient)


def add_outpatient(rng: np.random.Generator, p: Population, labs: Labs, t: float) -> None:
    f, n = p.flags, p.n
    rate = 0.6 + 1.8 * f["diabetic"] + 1.5 * (f["ckd"] & (p.egfr_end < 60)) + 0.3 * f["htn"]
    rate = rate + 1.0 * f["heart_failure"] + 1.0 * f["malignancy"] + 1.5 * f["g5"]
    hist_y = (t - p.start_s) / YEAR_S
    k = np.where(p.no_labs, 0, rng.poisson(rate * hist_y) + 1)
    pid = _rep(k)
    m = len(pid)
    tv = p.start_s[pid] + rng.random(m) * (t - 2 * DAY - p.start_s[pid])
    tv = np.floor(tv / DAY) * DAY + 7.5 * HOUR + rng.random(m) * 8 * HOUR
    tv = np.floor(tv / 60.0) * 60.0
    r = rng.random
    ff = {k2: v[pid] for k2, v in f.items()}

    def sel(prob: FloatArray | float) -> BoolArray:
        return r(m) < prob

    def lab(analyte: str, mask: BoolArray, value: FloatArray) -> None:
        labs.add(analyte, pid[mask], tv[mask], value[mask])

    crea = _creat(p, pid, tv, t) * rng.lognormal(0.0, 0.05, m)
    lab("creatinine", sel(np.where(ff["ckd"] | ff["diabetic"], 0.97, 0.85)), crea)
    eg = _egfr(p, pid, tv, t)
    k_mean = 4.3 + 0.025 * np.maximum(60.0 - eg, 0.0)
    lab("potassium", sel(0.75), rng.normal(k_mean, 0.38))
    cbc = sel(0.55)
    hb = p.hb_mean[pid] - 0.7 * np.maximum(60.0 - eg, 0.0) + rng.normal(0.0, 5.0, m)
    lab("hemoglobin", cbc, np.clip(hb, 25.0, 200.0))
    lab("platelets", cbc, np.clip(rng.lognormal(np.log(245.0), 0.25, m), 5.0, 1500.0))
    wbc = np.clip(rng.lognormal(np.log(6.8), 0.25, m), 0.5, 60.0)
    lab("wbc", cbc, wbc)
    lab("neutrophils", cbc, wbc * rng.uniform(0.45, 0.72, m))
    liver = sel(0.35)
    hep = ff["hepatitis_b"] | ff["hepatitis_c"] | ff["liver_failure"]
    ast = rng.lognormal(np.log(np.where(hep, 45.0, 23.0)), 0.35)
    lab("ast", liver, ast)
    lab("alt", liver, ast * rng.lognormal(np.log(0.95), 0.2, m))
    bili = rng.lognormal(np.log(np.where(ff["liver_failure"], 40.0, 10.0)), 0.4)
    lab("bilirubin_total", liver, bili)
    lip = sel(np.where(ff["diabetic"], 0.35, 0.25))
    for a, base in p.lipids.items():
        lab(a, lip, base[pid] * rng.lognormal(0.0, 0.08, m))
    lab("hba1c", sel(np.where(ff["diabetic"], 0.9, 0.07)),
        np.clip(p.hba1c_mean[pid] + rng.normal(0.0, 0.35, m), 4.0, 16.0))  # fmt: skip
    years_before = (t - tv) / YEAR_S
    uacr = p.uacr_end[pid] * np.exp(-p.uacr_growth[pid] * years_before) * rng.lognormal(0, 0.2, m)
    lab("uacr", sel(np.where(ff["diabetic"] | ff["ckd"], 0.45, 0.02)), uacr)
    prot = (R.PROTEIN_PER_ALBUMIN.value * uacr / 1000.0) * rng.lognormal(0.0, 0.12, m) + 0.05
    lab("urine_protein_24h", sel(np.where(ff["a3"], 0.35, 0.0)), prot)
    cys = cystatin_for_egfr(eg, _age_at(p, pid, tv), p.female[pid]) * rng.lognormal(0, 0.05, m)
    lab("cystatin_c", sel(np.where(ff["ckd"], 0.1, 0.01)), cys)
    tm = sel(np.where(ff["malignancy"], 0.3, 0.01))
    elevated = ff["malignancy"] & (r(m) < 0.35)
    for a, med in (("afp", 3.0), ("cea", 1.8), ("ca19_9", 12.0), ("ca125", 14.0)):
        v = rng.lognormal(np.log(med), 0.5, m) * np.where(elevated & (r(m) < 0.5), 8.0, 1.0)
        lab(a, tm, v)
    hbv = ff["hepatitis_b"] & sel(0.5)
    labs.add(
        "hbv_dna",
        pid[hbv],
        tv[hbv],
        np.where(r(int(hbv.sum())) < 0.4, 10 ** rng.uniform(2.5, 7.5, int(hbv.sum())), 10.0),
    )
    hcv = ff["hepatitis_c"] & sel(0.5)
    labs.add(
        "hcv_rna",
        pid[hcv],
        tv[hcv],
        np.where(r(int(hcv.sum())) < 0.5, 10 ** rng.uniform(3.0, 6.8, int(hcv.sum())), 10.0),
    )
    hfref = (p.flags["heart_failure"] & (rng.random(n) < 0.5))[pid]
    echo = sel(np.where(ff["heart_failure"], 0.3, 0.01))
    lab("lvef", echo, np.where(hfref, rng.uniform(18, 39, m), rng.uniform(50, 70, m)))
    bp = sel(0.9)
    sbp = np.clip(p.sbp_mean[pid] + rng.normal(0.0, 8.0, m), 80.0, 230.0)
    lab("sbp", bp, sbp)
    lab("dbp", bp, np.clip(0.5 * sbp + rng.normal(17.0, 6.0, m), 40.0, 130.0))
    drift = 1.0 + rng.normal(0.0, 0.02, m) - 0.01 * years_before
    lab("weight", sel(0.6), p.weight[pid] * drift)


# ----------------------------------------------------------------------------------------------
def add_admissions(
    rng: np.random.Generator, p: Population, ev: Events, labs: Labs, t: float
) -> None:
    f, n = p.flags, p.n
    r = rng.random
    rate = R.ADMISSION_RATE.value * np.power(1.35, (p.age - 50.0) / 10.0)
    rate = rate * (1 + f["ckd"] + 1.5 * f["heart_failure"] + 0.5 * f["diabetic"] + f["malignancy"])
    hist_y = (t - p.start_s) / YEAR_S
    k_hist = np.minimum(rng.poisson(rate * hist_y), 6)
    current = r(n) < R.CURRENT_INPATIENT.value * (1 + f["ckd"] + f["heart_failure"])
    k = k_hist + current
    a_pid = _rep(k)
    na = len(a_pid)
    is_cur = np.zeros(na, bool)
    last = np.cumsum(k) - 1
    is_cur[last[current]] = True
    los = np.clip(rng.lognormal(np.log(4.0), 0.6, na), 1.0, 30.0) * DAY
    start = p.start_s[a_pid] + r(na) * np.maximum(t - 2 * DAY - los - p.start_s[a_pid], DAY)
    cur_start = t - rng.uniform(0.3, 9.0, na) * DAY
    start = np.where(is_cur, cur_start, start)
    start = np.floor(start / 60.0) * 60.0
    end = np.where(is_cur, np.nan, np.minimum(start + los, t - HOUR))
    end_eff = np.where(is_cur, t - HOUR, end)
    dur = end_eff - start
    # ICU, infection, AKI
    icu = r(na) < R.ICU_GIVEN_ADMISSION.value * (1 + 0.5 * is_cur)
    infection = r(na) < R.INFECTION_GIVEN_ADMISSION.value
    p_aki = np.where(icu, R.AKI_GIVEN_ICU.value, R.AKI_GIVEN_ADMISSION.value)
    p_aki = p_aki * (1 + 0.5 * f["ckd"][a_pid]) * (1 + 0.5 * is_cur)
    aki = (r(na) < p_aki) & ~f["dialysis"][a_pid]
    stage = rng.choice(3, size=na, p=np.array(R.AKI_STAGE_MIX)) + 1
    stage = np.where(icu & (r(na) < 0.3), np.maximum(stage, 2), stage)
    peak = np.select([stage == 1, stage == 2], [rng.uniform(1.5, 1.95, na),
                     rng.uniform(2.05, 2.9, na)], rng.uniform(3.1, 4.5, na))  # fmt: skip
    onset = start + r(na) * np.minimum(36 * HOUR, 0.5 * dur)
    ttp = rng.uniform(24.0, 72.0, na)
    half_life = rng.uniform(24.0, 96.0, na)
    residual = np.where(r(na) < 0.1, rng.uniform(0.3, 0.8, na), rng.uniform(0.0, 0.1, na))
    icu_start = start + r(na) * np.minimum(12 * HOUR, 0.3 * dur)
    icu_start = np.floor(icu_start / HOUR) * HOUR
    icu_end = np.minimum(icu_start + np.clip(rng.lognormal(np.log(2.5), 0.5, na), 1, 10) * DAY,
                         end_eff)  # fmt: skip
    icu_end = np.maximum(icu_end, icu_start + HOUR)
    # encounters
    ev.add(a_pid, ci("enc:admission"), start, end=end,
           status=np.where(is_cur, ST["in-progress"], ST["finished"]))  # fmt: skip
    icu_end_rec = np.where(is_cur & (icu_end >= t - 2 * HOUR), np.nan, icu_end)
    ev.add(
        a_pid[icu],
        ci("enc:icu"),
        icu_start[icu],
        end=icu_end_rec[icu],
        status=np.where(np.isnan(icu_end_rec[icu]), ST["in-progress"], ST["finished"]),
    )
    # admission diagnosis
    reason = np.where(
        infection,
        _pick(rng, ["cond:J18.9", "cond:N39.0", "cond:A41.9"], [0.5, 0.3, 0.2], na),
        np.where(f["heart_failure"][a_pid] & (r(na) < 0.4), ci("cond:I50.9"),
                 _pick(rng, ["cond:I21.4", "cond:K92.2", "cond:S72.001A", "cond:K80.20",
                             "cond:R55"], [0.25, 0.2, 0.2, 0.2, 0.15], na)),
    ).astype(np.int64)  # fmt: skip
    reason = np.where(infection & icu & (r(na) < 0.4), ci("cond:R65.21"), reason)
    ev.add(a_pid, reason, start + HOUR, end=end,
           status=np.where(is_cur, ST["active"], ST["resolved"]))  # fmt: skip
    coded = aki & (r(na) < R.AKI_CODED.value) & (onset + DAY < end_eff)
    ev.add(a_pid[coded], ci("cond:N17.9"), onset[coded] + DAY, end=end[coded],
           status=np.where(is_cur[coded], ST["active"], ST["resolved"]))  # fmt: skip
    postrenal = coded & (r(na) < R.POSTRENAL_GIVEN_AKI.value / R.AKI_CODED.value)
    ev.add(a_pid[postrenal], ci("cond:N13.9"), onset[postrenal] + DAY, status="active")
    # antibiotics, vasopressors, ventilation, transfusion
    ab = infection
    ev.add(a_pid[ab], ci("med:ceftriaxone"), start[ab] + 2 * HOUR,
           end=np.minimum(start[ab] + 7 * DAY, end_eff[ab]), dose=2.0,
           status=np.where(is_cur[ab], ST["active"], ST["completed"]))  # fmt: skip
    shock = icu & infection & (r(na) < 0.5)
    ev.add(a_pid[shock], ci("med:norepinephrine"), icu_start[shock] + HOUR,
           end=np.minimum(icu_start[shock] + rng.uniform(0.5, 4, int(shock.sum())) * DAY,
                          icu_end[shock]), dose=0.1,
           status=np.where(is_cur[shock], ST["active"], ST["completed"]))  # fmt: skip
    vent = icu & (r(na) < R.VENTILATION_GIVEN_ICU.value)
    ev.add(a_pid[vent], ci("proc:ventilation"), icu_start[vent] + 2 * HOUR,
           end=np.minimum(icu_start[vent] + rng.uniform(1, 6, int(vent.sum())) * DAY,
                          icu_end[vent]), status="completed")  # fmt: skip
    tr = r(na) < R.TRANSFUSION_GIVEN_ADMISSION.value
    ev.add(a_pid[tr], ci("proc:transfusion"), start[tr] + 0.5 * dur[tr], status="completed")
    # creatinine: at admission, then every morning; ICU also every evening
    ndays = np.floor((end_eff - start) / DAY).astype(np.int64) + 1
    own = _rep(ndays)
    day0 = np.floor(start / DAY) * DAY
    tc = day0[own] + (_within(ndays) + 1) * DAY + 6 * HOUR + r(len(own)) * 1.5 * HOUR
    tc = np.concatenate([start + HOUR, tc])
    own = np.concatenate([np.arange(na), own])
    in_icu_days = icu[own] & (tc >= icu_start[own]) & (tc < icu_end[own])
    tc = np.concatenate([tc, tc[in_icu_days] + 12 * HOUR])
    own = np.concatenate([own, own[in_icu_days]])
    keep = tc < end_eff[own]
    tc, own = np.floor(tc[keep] / 60.0) * 60.0, own[keep]
    pid = a_pid[own]
    base = _creat(p, pid, start[own], t)
    h = (tc - onset[own]) / HOUR
    fac = np.where(aki[own], aki_factor(h, peak[own], ttp[own], half_life[own], residual[own]), 1)
    dial = f["dialysis"][pid]
    crea = base * fac * rng.lognormal(0.0, 0.03, len(tc))
    crea = np.where(dial, base * rng.uniform(0.7, 1.1, len(tc)), crea)
    labs.add("creatinine", pid, tc, np.clip(crea, 15.0, 2500.0), inpatient=True)
    eg = _egfr(p, pid, tc, t) / fac
    labs.add("potassium", pid, tc, np.clip(rng.normal(4.2 + 0.03 * np.maximum(60 - eg, 0), 0.45),
                                           2.0, 9.0))  # fmt: skip
    sick = icu[own] & (r(len(own)) < 0.1)
    hb = p.hb_mean[pid] - 12.0 - 0.7 * np.maximum(60.0 - eg, 0.0) + rng.normal(0.0, 8.0, len(own))
    labs.add("hemoglobin", pid, tc, np.clip(np.where(sick, hb - 40, hb), 35.0, 200.0))
    # full blood count and liver panel at admission
    first = np.arange(na)
    inf = infection
    wbc = rng.lognormal(np.log(np.where(inf, 13.0, 7.5)), 0.3)
    wbc = np.where(icu & (r(na) < 0.05), rng.uniform(0.5, 1.9, na), wbc)
    plt = rng.lognormal(np.log(np.where(icu, 190.0, 240.0)), 0.35)
    plt = np.where(icu & (r(na) < 0.08), rng.uniform(8.0, 49.0, na), plt)
    ta = start + HOUR
    labs.add("platelets", a_pid[first], ta, np.clip(plt, 3.0, 1500.0), inpatient=True)
    labs.add("wbc", a_pid, ta, np.clip(wbc, 0.3, 80.0), inpatient=True)
    labs.add("neutrophils", a_pid, ta, np.clip(wbc * rng.uniform(0.5, 0.9, na), 0.05, 70.0))
    ast = rng.lognormal(np.log(28.0), 0.45, na)
    ast = np.where(icu & (r(na) < 0.08), rng.uniform(210.0, 2000.0, na), ast)
    labs.add("ast", a_pid, ta, ast)
    labs.add("alt", a_pid, ta, ast * rng.lognormal(np.log(0.9), 0.25, na))
    bili = rng.lognormal(np.log(12.0), 0.5, na)
    labs.add("bilirubin_total", a_pid, ta, np.where(icu & (r(na) < 0.05), bili * 6, bili))
    sbp = np.clip(p.sbp_mean[a_pid] + rng.normal(0.0, 14.0, na), 60.0, 230.0)
    sbp = np.where(shock, rng.uniform(65.0, 88.0, na), sbp)
    labs.add("sbp", a_pid, ta, sbp)
    labs.add("dbp", a_pid, ta, np.clip(0.5 * sbp + rng.normal(15.0, 6.0, na), 30.0, 130.0))
    labs.add("weight", a_pid, ta, p.weight[a_pid] * rng.normal(1.0, 0.015, na))
    # ICU: daily weights, hourly urine output
    ic = np.flatnonzero(icu)
    nd = (np.floor((icu_end[ic] - icu_start[ic]) / DAY)).astype(np.int64)
    o = _rep(nd)
    tw = np.floor(icu_start[ic][o] / DAY) * DAY + (_within(nd) + 1) * DAY + 5 * HOUR
    okw = tw < icu_end[ic][o]
    labs.add(
        "weight",
        a_pid[ic][o][okw],
        tw[okw],
        p.weight[a_pid[ic][o][okw]] * rng.normal(1.02, 0.02, int(okw.sum())),
        inpatient=True,
    )
    nh = np.floor((icu_end[ic] - icu_start[ic]) / HOUR).astype(np.int64)
    o = _rep(nh)
    a = ic[o]
    th = icu_start[a] + _within(nh) * HOUR
    hrs = (th - onset[a]) / HOUR
    oligo = aki & (stage >= 2) & icu & (r(na) < R.OLIGURIA_GIVEN_AKI23_ICU.value)
    olig_rate = np.where(stage == 3, rng.uniform(0.0, 0.3, na), rng.uniform(0.15, 0.45, na))
    normal = np.clip(rng.lognormal(np.log(1.0), 0.35, len(a)), 0.3, 4.0)
    rate_h = urine_rate(hrs, oligo[a], ttp[a] * 0.3, rng.uniform(12.0, 30.0, na)[a], olig_rate[a],
                        normal)  # fmt: skip
    rate_h = np.where(f["dialysis"][a_pid[a]], rate_h * 0.1, rate_h)
    vol = np.round(rate_h * p.weight[a_pid[a]] * rng.lognormal(0.0, 0.15, len(a)))
    ev.add(a_pid[a], ci("lab:urine_volume"), th, end=th + HOUR, value=np.clip(vol, 0.0, 2000.0))
    # renal replacement therapy in stage-3 AKI
    rrt = aki & (stage == 3) & (r(na) < R.RRT_GIVEN_AKI3.value)
    t_peak = onset + ttp * HOUR
    rrt &= t_peak < end_eff
    sessions = np.where(rrt, rng.integers(2, 8, na), 0)
    o = _rep(sessions)
    ts = np.floor(t_peak[o] / HOUR) * HOUR + _within(sessions) * DAY
    ok = ts + 4 * HOUR < end_eff[o]
    ev.add(a_pid[o][ok], ci("proc:hemodialysis"), ts[ok], end=ts[ok] + 4 * HOUR, status="completed")
    w = _within(sessions)
    first_rrt = ok & (w == 0)
    ev.add(a_pid[o][first_rrt], ci("proc:hemodialysis_pcs"), ts[first_rrt],
           end=ts[first_rrt] + 4 * HOUR, status="completed")  # fmt: skip


# ----------------------------------------------------------------------------------------------
def fix_creatinine_count(
    rng: np.random.Generator, p: Population, labs: Labs, k: int, t: float
) -> None:
    """Make exactly ``k`` creatinine results per patient (outpatient ones dropped/added first)."""
    sel = [i for i, a in enumerate(labs.analyte) if a == "creatinine"]
    pid = np.concatenate([labs.pid[i] for i in sel])
    tt = np.concatenate([labs.t[i] for i in sel])
    val = np.concatenate([labs.value[i] for i in sel])
    inp = np.concatenate([np.full(len(labs.pid[i]), labs.inpatient[i]) for i in sel])
    for i in sorted(sel, reverse=True):
        for lst in (labs.pid, labs.t, labs.analyte, labs.value, labs.inpatient):
            del lst[i]
    order = np.lexsort((rng.random(len(pid)), ~inp, pid))  # inpatient values kept first
    pid, tt, val, inp = pid[order], tt[order], val[order], inp[order]
    counts = np.bincount(pid, minlength=p.n)
    rank = _within(counts)
    keep = rank < k
    missing = np.maximum(k - counts, 0)
    own = _rep(missing)
    m = len(own)
    tx = p.start_s[own] + rng.random(m) * (t - 2 * DAY - p.start_s[own])
    tx = np.floor(tx / DAY) * DAY + 7.5 * HOUR + np.floor(rng.random(m) * 480) * 60.0
    vx = _creat(p, own, tx, t) * rng.lognormal(0.0, 0.05, m)
    labs.add("creatinine", np.concatenate([pid[keep], own]), np.concatenate([tt[keep], tx]),
             np.concatenate([val[keep], vx]))  # fmt: skip


def labs_to_events(p: Population, labs: Labs, ev: Events) -> None:
    """Lab/vital draws -> events; sbp and dbp drawn together share one resource (BP panel)."""
    bp_res: IntArray | None = None
    for analyte, pid, t, v in zip(labs.analyte, labs.pid, labs.t, labs.value, strict=True):
        lo, hi = ANALYTES[analyte].plausible
        v = np.clip(v, lo + 1e-6, hi * 0.999)
        if analyte == "dbp" and bp_res is not None and len(bp_res) == len(pid):
            ev.add(pid, ci("lab:dbp"), t, value=v, res=bp_res)
            bp_res = None
            continue
        res = ev.add(pid, ci(f"lab:{analyte}"), t, value=v)
        bp_res = res if analyte == "sbp" else None
