"""The bundled synthetic demo cohort: generated, deterministic, covering all four seed trials.

``build_demo_store(store_dir)`` writes a canonical store (dataset ``demo``) of ``n_patients``
synthetic patients to be screened at :data:`DEMO_AS_OF` (2026-06-01 08:00 UTC). Nothing is copied
from real data: every value comes from the archetype recipes below and a
``numpy.random.Generator`` seeded with ``seed``, so the same seed gives an identical store.

Composition. The first ``len(ARCHETYPES)`` patients (``demo-p0001`` ...) are one of each
archetype, in the order of :data:`ARCHETYPES`; the rest are drawn from the archetypes by weight
(background 60, aki-severe 10, dkd 12, htn-nephropathy 8, background-no-labs 10, aki-mild 6, the
others 1-4). An archetype is a clinical picture plus, for the variants, one finding aimed at one
criterion (trials: T1 NCT06954740 AKI, T2 NCT06969807 DKD, T3 NCT04194671 severe AKI, T4
NCT07240987 CKD 3-4):

- AKI pictures (T1, T3), age 25-62: outpatient creatinine 10, 5 and 2 months earlier (baseline
  history), an admission ~2 days before screening with five creatinine results, AKI diagnosis
  N17.9, weight, full blood count + liver panel (30 h and 6 h before), LVEF, hourly urine output
  in 40 %. ``aki-severe``: creatinine x2.6 in 48 h (KDIGO stage 2, "> two-fold within 48 h");
  ``aki-mild``: x1.55 (KDIGO stage 1 only; T3 not met); ``aki-oliguric``: creatinine x1.2 only but
  urine 0.3 mL/kg/h for 14 h (urine criteria of T1 and T3); ``aki-no-baseline``: no earlier
  creatinine; ``aki-old-episode``: the rise 3 weeks ago; ``aki-missing-labs``: no blood count or
  liver panel (needs data); ``aki-unknown-age``: no birth date, deliberately; ``aki-age-70``,
  ``aki-age-78``, ``aki-age-18-today`` and ``aki-age-75-today`` (exact birthdays); ``aki-ckd-pre``
  (baseline eGFR 45, age < 65: T3 exc-9); ``aki-dialysis`` (CPT 90935 + ICD-10-PCS 5A1D70Z).
- AKI exclusions: C34.90 lung cancer 2 years ago, Z85.3 cancer history, Z94.0 kidney and Z94.84
  stem-cell transplant, B18.1 / B18.2 chronic hepatitis B / C (200 days ago), B20 HIV, A15.0
  tuberculosis, I63.9 cerebral infarction (2 months), I61.9 intracerebral haemorrhage (3 months),
  prednisolone ATC H02AB06 for 14 days, prednisone H02AB07 for exactly 7 and 8 days, tacrolimus
  L04AD02, AST 320 and ALT 260 U/L (> 5 x ULN 40), bilirubin 80 umol/L (> 3 x ULN 21), WBC 1.5 and
  neutrophils 0.8 x10^9/L, haemoglobin 55 g/L, platelets 40, 20 and exactly 50 x10^9/L, LVEF 35 %,
  I47.2 ventricular tachycardia, O09.90 high-risk pregnancy, N05.9 nephritic syndrome, M32.14 lupus
  nephritis, M31.31 ANCA vasculitis, N13.9 obstructive uropathy, K72.10 chronic hepatic failure,
  ICD-10-PCS 5A1955Z mechanical ventilation (30 h ago).
- DKD pictures (T2, T4), age 50-76: E11.22 (+ E11.65 in half), N18.3x/N18.4 by eGFR, creatinine
  every 3 months for 2 years with CKD-EPI 2021 eGFR declining to 24-55, UACR 1200-2600 mg/g, two
  24-h urine protein results >= 3.5 g (60 and 10 days ago), HbA1c 6.8-8.5 %, BP <= 150/92, lipids,
  potassium, HBV DNA / HCV RNA 0 IU/mL (with reference range), haemoglobin, tumour markers AFP,
  CEA, CA19-9, CA125, kidney biopsy CPT 50200 3 years ago. Variants: UACR 800 and exactly 1000,
  24-h protein 4.0 then 2.8 g, HbA1c 9.6 and exactly 9.0 %, BP 172/104, eGFR 17 and 12, age 40
  and exactly 80, HbA1c missing, UACR and protein missing, type 1 only (E10.22), I48.0 atrial
  fibrillation, I20.0 unstable angina, Q21.1 atrial septal defect, I63.9 and lacunar I63.81
  infarction, triglycerides 7.1 and LDL 4.6 mmol/L, potassium 6.6 (+ E87.5), HBV DNA 5x10^4 IU/mL
  (+ B18.1), C18.7 colon cancer, ceftriaxone J01DD04 IV for pneumonia J18.9, mycophenolate
  L04AA06 20 days, N02.8 glomerular disease, CEA 12 ng/mL, red-cell transfusion ICD-10-PCS
  30233N1 (12 days ago), I26.99 pulmonary embolism, haemoglobin 28 g/L.
- Hypertensive nephropathy (T4), age 40-78: I12.9 + N18.x, eGFR 24-55, UACR 400-900 mg/g, no
  24-h protein. Variants: UACR 150 and exactly 300 mg/g, eGFR 60, Q61.2 ADPKD, Z94.0 kidney
  transplant, Z33.1 pregnancy, tumour markers missing, J18.9 pneumonia (5 days), F11.20 opioid
  dependence, F32.9 depression, D68.9 coagulation defect.
- Background, age 20-85: half with one common diagnosis (I10, E78.5, J45.909, M54.50); stable
  creatinine 400, 200 and 30 days ago, blood count, HbA1c; ``background-no-labs`` has none.

Each trial gets potentially eligible, needs-data and ineligible patients. Codes are standard
(ICD-10-CM conditions, LOINC results with ``analyte`` set and values in canonical units, ATC
drugs, CPT / ICD-10-PCS procedures) so that the protocols' concept sets match;
``source`` is ``demo/<Resource>/<patient>-<tag>-<n>``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from trialsieve.codes import ATC, CPT, ICD10CM, ICD10PCS, LOINC
from trialsieve.kidney.creatinine import UMOL_PER_MGDL
from trialsieve.kidney.egfr import egfr
from trialsieve.store.schema import EVENTS_SCHEMA, PATIENTS_SCHEMA
from trialsieve.store.writer import IngestSummary, StoreWriter
from trialsieve.units import canonical_unit

#: the screening instant of the demo (UTC, naive)
DEMO_AS_OF = dt.datetime(2026, 6, 1, 8, 0)
DEMO_DATASET = "demo"

#: LOINC code per analyte used by the generator (all mapped in ``trialsieve.codes``)
LOINC_OF: dict[str, str] = {
    "creatinine": "2160-0", "uacr": "9318-7", "urine_protein_24h": "2889-4", "hba1c": "4548-4",
    "hemoglobin": "718-7", "platelets": "777-3", "wbc": "6690-2", "neutrophils": "751-8",
    "ast": "1920-8", "alt": "1742-6", "bilirubin_total": "1975-2", "potassium": "2823-3",
    "triglycerides": "2571-8", "ldl": "18262-6", "sbp": "8480-6", "dbp": "8462-4",
    "weight": "29463-7", "urine_volume": "9187-6", "lvef": "10230-1", "afp": "1834-1",
    "cea": "2039-6", "ca19_9": "24108-3", "ca125": "10334-1", "hbv_dna": "42595-9",
    "hcv_rna": "11011-4",
}  # fmt: skip

#: reference ranges attached to results (canonical units)
REF: dict[str, tuple[float | None, float | None]] = {
    "creatinine": (45.0, 110.0), "hemoglobin": (120.0, 170.0), "platelets": (150.0, 400.0),
    "wbc": (4.0, 11.0), "neutrophils": (1.5, 7.5), "ast": (0.0, 40.0), "alt": (0.0, 40.0),
    "bilirubin_total": (0.0, 21.0), "potassium": (3.5, 5.0), "hbv_dna": (None, 20.0),
    "hcv_rna": (None, 15.0), "afp": (None, 10.0), "cea": (None, 5.0), "ca19_9": (None, 37.0),
    "ca125": (None, 35.0), "hba1c": (4.0, 6.0),
}  # fmt: skip

_VITAL = {"sbp", "dbp", "weight", "lvef"}
_H = dt.timedelta(hours=1)
_D = dt.timedelta(days=1)


def scr_for_egfr(target: float, age: float, female: bool) -> float:
    """Creatinine (umol/L) at which CKD-EPI 2021 gives ``target`` mL/min/1.73 m² (bisection).

    CKD-EPI 2021 (Inker LA et al. N Engl J Med 2021;385:1737) is monotonically decreasing in
    creatinine, so bisection on [10, 3000] umol/L converges.
    """
    lo, hi = 10.0, 3000.0
    for _ in range(80):
        mid = (lo + hi) / 2
        val = float(egfr("ckd-epi-2021", mid / UMOL_PER_MGDL, age, female)[()])
        if val > target:
            lo = mid
        else:
            hi = mid
    return round((lo + hi) / 2, 1)


@dataclass
class _Patient:
    """One generated patient: demographics and event rows (grouped by FHIR-like record type)."""

    pid: str
    birth_date: dt.date | None
    sex: str
    rng: np.random.Generator
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    _n: int = 0

    @property
    def age(self) -> float:
        """Age in years at DEMO_AS_OF (50 when the birth date is deliberately unknown)."""
        if self.birth_date is None:
            return 50.0
        return (DEMO_AS_OF.date() - self.birth_date).days / 365.25

    @property
    def female(self) -> bool:
        return self.sex == "female"

    def _src(self, resource: str, tag: str) -> str:
        self._n += 1
        return f"demo/{resource}/{self.pid}-{tag}-{self._n}"

    def result(
        self,
        analyte: str,
        t: dt.datetime,
        value: float,
        *,
        end: dt.datetime | None = None,
        ref: bool = True,
    ) -> None:
        """A numeric result in the analyte's canonical unit (lab, vital or urine output)."""
        kind = "vital" if analyte in _VITAL else "output" if analyte == "urine_volume" else "lab"
        low, high = REF.get(analyte, (None, None)) if ref else (None, None)
        unit = canonical_unit(analyte)
        value = round(float(value), 2)
        self.rows["Observation"].append(
            {
                "patient_id": self.pid,
                "kind": kind,
                "analyte": analyte,
                "code_system": LOINC,
                "code": LOINC_OF[analyte],
                "display": analyte,
                "start_time": t.replace(second=0, microsecond=0),
                "end_time": end,
                "value": value,
                "unit": unit,
                "orig_value": f"{value:g}",
                "orig_unit": unit,
                "ref_low": low,
                "ref_high": high,
                "status": "final",
                "source": self._src("Observation", analyte),
            }
        )

    def condition(
        self,
        code: str,
        onset: dt.datetime,
        display: str,
        *,
        status: str = "active",
        end: dt.datetime | None = None,
    ) -> None:
        """An ICD-10-CM diagnosis."""
        self.rows["Condition"].append(
            {
                "patient_id": self.pid,
                "kind": "condition",
                "code_system": ICD10CM,
                "code": code,
                "display": display,
                "start_time": onset.replace(second=0, microsecond=0),
                "end_time": end,
                "status": status,
                "source": self._src("Condition", code.replace(".", "")),
            }
        )

    def procedure(
        self,
        system: str,
        code: str,
        t: dt.datetime,
        display: str,
        *,
        end: dt.datetime | None = None,
    ) -> None:
        """A CPT or ICD-10-PCS procedure."""
        self.rows["Procedure"].append(
            {
                "patient_id": self.pid,
                "kind": "procedure",
                "code_system": system,
                "code": code,
                "display": display,
                "start_time": t.replace(second=0, microsecond=0),
                "end_time": end,
                "status": "completed",
                "source": self._src("Procedure", code),
            }
        )

    def medication(
        self,
        atc: str,
        start: dt.datetime,
        end: dt.datetime,
        display: str,
        *,
        dose: float | None = None,
        dose_unit: str | None = None,
        route: str = "oral",
    ) -> None:
        """An ATC-coded drug exposure from ``start`` to ``end``."""
        self.rows["MedicationRequest"].append(
            {
                "patient_id": self.pid,
                "kind": "medication",
                "code_system": ATC,
                "code": atc,
                "display": display,
                "start_time": start.replace(second=0, microsecond=0),
                "end_time": end.replace(second=0, microsecond=0),
                "dose_value": dose,
                "dose_unit": dose_unit,
                "route": route,
                "status": "completed" if end <= DEMO_AS_OF else "active",
                "source": self._src("MedicationRequest", atc),
            }
        )

    def u(self, low: float, high: float) -> float:
        """A uniform draw in [low, high)."""
        return float(self.rng.uniform(low, high))


T0 = DEMO_AS_OF


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------
def _blood_panel(p: _Patient, t: dt.datetime, **override: float) -> None:
    """Full blood count and liver panel (normal unless overridden)."""
    normal = {
        "hemoglobin": p.u(118, 150),
        "platelets": p.u(170, 320),
        "wbc": p.u(5.0, 9.5),
        "neutrophils": p.u(2.5, 6.0),
        "ast": p.u(15, 35),
        "alt": p.u(12, 35),
        "bilirubin_total": p.u(6, 17),
    }
    normal.update(override)
    for analyte, value in normal.items():
        p.result(analyte, t, value)


def _outpatient_creatinine(p: _Patient, base: float) -> None:
    """Outpatient creatinine 10, 5 and 2 months before the demo instant (baseline history)."""
    for days in (300, 150, 60):
        p.result("creatinine", T0 - days * _D - p.u(0, 48) * _H, base * p.u(0.97, 1.08))


def _aki(
    p: _Patient,
    *,
    severe: bool = True,
    history: bool = True,
    base: float | None = None,
    oliguric: bool = False,
    offset: dt.timedelta = dt.timedelta(0),
    labs: bool = True,
    panel: dict[str, float] | None = None,
    lvef: float | None = None,
) -> None:
    """An AKI admission ending ``offset`` before the demo instant.

    ``severe``: creatinine x2.6 of the admission value within 44 h (KDIGO 2012 stage 2-3 and the
    "> two-fold within 48 h" of NCT04194671); else x1.55 (KDIGO stage 1 by ratio and the
    >= 26.5 umol/L in 48 h rule). ``oliguric``: creatinine rises only x1.2 (< 26.5 umol/L, no
    creatinine criterion) but 14 h of urine output 0.3 mL/kg/h follow 10 h at 1.0 mL/kg/h (KDIGO
    urine criterion < 0.5 mL/kg/h for >= 6 h; NCT04194671 >= 12 h).
    """
    if base is None:
        base = scr_for_egfr(p.u(80, 100), p.age, p.female)
    if history:
        _outpatient_creatinine(p, base)
    end = T0 - offset
    weight = p.u(55, 95)
    p.result("weight", end - 52 * _H, weight)
    p.condition("N17.9", end - 40 * _H, "Acute kidney failure, unspecified")
    if oliguric:
        factors = [(50, 1.0), (36, 1.05), (22, 1.12), (8, 1.18), (2, 1.2)]
    elif severe:
        factors = [(50, 1.05), (38, 1.40), (26, 1.80), (14, 2.30), (2, 2.60)]
    else:
        factors = [(40, 1.0), (28, 1.20), (16, 1.45), (4, 1.55)]
    for hours, f in factors:
        p.result("creatinine", end - hours * _H, base * f)
    if oliguric:
        for h in range(24, 0, -1):
            rate = 1.0 if h > 14 else 0.3
            start = end - h * _H
            p.result("urine_volume", start, rate * weight, end=start + _H)
    elif p.rng.random() < 0.4:
        for h in range(12, 0, -1):
            start = end - h * _H
            p.result("urine_volume", start, p.u(0.8, 1.6) * weight, end=start + _H)
    if labs:
        _blood_panel(p, end - 30 * _H)
        _blood_panel(p, end - 6 * _H, **(panel or {}))
        p.result("lvef", end - 20 * _H, lvef if lvef is not None else p.u(55, 68))


def _ckd(
    p: _Patient,
    *,
    cause: str = "dkd",
    egfr_now: float | None = None,
    uacr: float | None = None,
    protein: tuple[float, float] | None = (4.2, 5.0),
    hba1c: float | None = None,
    bp: tuple[float, float] | None = None,
    labs: dict[str, float] | None = None,
    markers: bool = True,
    biopsy: bool = True,
) -> None:
    """Chronic kidney disease with a slow eGFR decline over 2 years.

    ``cause`` "dkd" (ICD-10-CM E11.22 type 2 diabetes with diabetic CKD), "t1" (E10.22) or "htn"
    (I12.9 hypertensive CKD). The CKD stage code follows KDIGO 2012 G-categories (N18.31 G3a,
    N18.32 G3b, N18.4 G4, N18.5 G5). ``uacr``/``protein``/``hba1c`` None = not measured.
    """
    if egfr_now is None:
        egfr_now = p.u(24, 55)
    onset = T0 - p.u(4, 9) * 365 * _D
    if cause == "dkd":
        p.condition(
            "E11.22", onset, "Type 2 diabetes mellitus with diabetic chronic kidney disease"
        )
        if p.rng.random() < 0.5:
            p.condition("E11.65", onset + 200 * _D, "Type 2 diabetes mellitus with hyperglycemia")
    elif cause == "t1":
        p.condition(
            "E10.22", onset, "Type 1 diabetes mellitus with diabetic chronic kidney disease"
        )
    else:
        p.condition("I12.9", onset, "Hypertensive chronic kidney disease with stage 1-4 CKD")
    stage = (
        "N18.5"
        if egfr_now < 15
        else "N18.4"
        if egfr_now < 30
        else "N18.32"
        if egfr_now < 45
        else "N18.31"
        if egfr_now < 60
        else "N18.2"
    )
    p.condition(stage, T0 - 200 * _D, f"Chronic kidney disease ({stage})")
    # quarterly creatinine, eGFR declining ~6/yr towards egfr_now (latest 10 days ago)
    for q in range(8, -1, -1):
        t = T0 - (10 + q * 91) * _D - p.u(0, 24) * _H
        age_then = p.age - (10 + q * 91) / 365.25
        target = egfr_now + q * 1.5
        p.result("creatinine", t, scr_for_egfr(target, age_then, p.female))
    recent = T0 - 10 * _D
    if uacr is not None:
        p.result("uacr", T0 - 100 * _D, uacr * p.u(0.9, 1.05))
        p.result("uacr", recent, uacr)
    if protein is not None:
        p.result("urine_protein_24h", T0 - 60 * _D, protein[0])
        p.result("urine_protein_24h", recent + 2 * _H, protein[1])
    if hba1c is not None:
        p.result("hba1c", recent, hba1c)
    sbp, dbp = bp if bp is not None else (p.u(122, 150), p.u(70, 92))
    p.result("sbp", recent + 30 * dt.timedelta(minutes=1), sbp)
    p.result("dbp", recent + 30 * dt.timedelta(minutes=1), dbp)
    p.result("weight", recent, p.u(60, 100))
    lab = {
        "triglycerides": p.u(1.1, 2.6),
        "ldl": p.u(1.6, 3.2),
        "potassium": p.u(4.0, 5.0),
        "hemoglobin": p.u(105, 135),
        "platelets": p.u(170, 320),
        "hbv_dna": 0.0,
        "hcv_rna": 0.0,
    }
    tumour = ("afp", "cea", "ca19_9", "ca125")
    lab.update({k: v for k, v in (labs or {}).items() if k not in tumour})
    for analyte, value in lab.items():
        p.result(analyte, recent if analyte not in ("hbv_dna", "hcv_rna") else T0 - 20 * _D, value)
    if markers:
        tm = {"afp": p.u(1.5, 6), "cea": p.u(0.8, 3.5), "ca19_9": p.u(5, 25), "ca125": p.u(6, 25)}
        tm.update({k: v for k, v in (labs or {}).items() if k in tumour})
        for analyte, value in tm.items():
            p.result(analyte, T0 - 20 * _D, value)
    if biopsy:
        p.procedure(CPT, "50200", T0 - 3 * 365 * _D, "Renal biopsy; percutaneous, by trocar")


def _background(p: _Patient, *, labs: bool = True) -> None:
    """An unremarkable adult: stable creatinine, routine labs, a common diagnosis or none."""
    if p.rng.random() < 0.5:
        code, name = [
            ("I10", "Essential (primary) hypertension"),
            ("E78.5", "Hyperlipidemia, unspecified"),
            ("J45.909", "Unspecified asthma, uncomplicated"),
            ("M54.50", "Low back pain, unspecified"),
        ][int(p.rng.integers(0, 4))]
        p.condition(code, T0 - p.u(1, 10) * 365 * _D, name)
    if not labs:
        return
    base = scr_for_egfr(p.u(70, 105), p.age, p.female)
    for days in (400, 200, 30):
        p.result("creatinine", T0 - days * _D, base * p.u(0.95, 1.05))
    _blood_panel(p, T0 - 30 * _D)
    p.result("hba1c", T0 - 30 * _D, p.u(5.0, 5.9))


# --------------------------------------------------------------------------------------------
# archetypes: name -> (weight, age range, fixed sex or None, builder)
# --------------------------------------------------------------------------------------------
Builder = Callable[[_Patient], None]


@dataclass(frozen=True)
class Archetype:
    """A recipe: a name, a sampling weight, an age range, an optional fixed sex, a builder."""

    name: str
    weight: float
    age: tuple[float, float]
    build: Builder
    sex: str | None = None
    unknown_birth_date: bool = False
    birth: dt.date | None = None  # a fixed birth date (age boundaries)


def _cond(code: str, days_ago: float, display: str) -> Builder:
    return lambda p: p.condition(code, T0 - days_ago * _D, display)


def _then(*builders: Builder) -> Builder:
    def run(p: _Patient) -> None:
        for b in builders:
            b(p)

    return run


def _steroid(atc: str, days: float, name: str, dose: float = 20.0) -> Builder:
    """Drug exposure of ``days`` days ending 3 days before the demo instant."""
    return lambda p: p.medication(
        atc, T0 - (3 + days) * _D, T0 - 3 * _D, name, dose=dose, dose_unit="mg"
    )


def _birthday(years: int) -> dt.date:
    """The birth date making a patient exactly ``years`` old on the demo day (a birthday)."""
    d = DEMO_AS_OF.date()
    return d.replace(year=d.year - years)


def _aki_with(**kw: Any) -> Builder:
    return lambda p: _aki(p, **kw)


def _dkd_with(**kw: Any) -> Builder:
    def run(p: _Patient) -> None:
        args: dict[str, Any] = {
            "cause": "dkd",
            "uacr": p.u(1200, 2600),
            "hba1c": p.u(6.8, 8.5),
        }
        args.update(kw)
        _ckd(p, **args)

    return run


def _htn_with(**kw: Any) -> Builder:
    def run(p: _Patient) -> None:
        args: dict[str, Any] = {"cause": "htn", "uacr": p.u(400, 900), "protein": None}
        args.update(kw)
        _ckd(p, **args)

    return run


_AKI_AGE = (25.0, 62.0)
_DKD_AGE = (50.0, 76.0)
_HTN_AGE = (40.0, 78.0)
_dkd = _dkd_with()
_aki_sev = _aki_with()


ARCHETYPES: list[Archetype] = [
    # --- clean candidates ------------------------------------------------------------------
    Archetype("aki-severe", 10, _AKI_AGE, _aki_sev),
    Archetype("aki-mild", 6, _AKI_AGE, _aki_with(severe=False)),
    Archetype("aki-oliguric", 4, _AKI_AGE, _aki_with(oliguric=True)),
    Archetype("dkd", 12, _DKD_AGE, _dkd),
    Archetype("htn-nephropathy", 8, _HTN_AGE, _htn_with()),
    Archetype("background", 60, (20.0, 85.0), _background),
    # --- needs data ------------------------------------------------------------------------
    Archetype("aki-missing-labs", 3, _AKI_AGE, _aki_with(labs=False)),
    Archetype("dkd-missing-hba1c", 2, _DKD_AGE, _dkd_with(hba1c=None)),
    Archetype("dkd-missing-uacr-protein", 2, _DKD_AGE, _dkd_with(uacr=None, protein=None)),
    Archetype("htn-missing-markers", 2, _HTN_AGE, _htn_with(markers=False)),
    Archetype("aki-unknown-age", 1, _AKI_AGE, _aki_sev, unknown_birth_date=True),
    Archetype("background-no-labs", 10, (20.0, 85.0), lambda p: _background(p, labs=False)),
    # --- AKI variants ----------------------------------------------------------------------
    Archetype("aki-no-baseline", 3, _AKI_AGE, _aki_with(history=False)),
    Archetype("aki-old-episode", 2, _AKI_AGE, _aki_with(offset=dt.timedelta(days=21))),
    Archetype("aki-age-70", 2, (68.0, 72.0), _aki_sev),
    Archetype("aki-age-78", 2, (77.0, 79.0), _aki_sev),
    Archetype(
        "aki-ckd-pre",
        2,
        (45.0, 60.0),
        lambda p: _aki(p, base=scr_for_egfr(45, p.age, p.female)),
    ),
    Archetype(
        "aki-dialysis",
        2,
        _AKI_AGE,
        _then(
            _aki_sev,
            lambda p: p.procedure(
                CPT, "90935", T0 - 10 * _H, "Hemodialysis procedure, single evaluation"
            ),
            lambda p: p.procedure(
                ICD10PCS,
                "5A1D70Z",
                T0 - 10 * _H,
                "Performance of urinary filtration, intermittent, < 6 h/day",
                end=T0 - 6 * _H,
            ),
        ),
    ),
    # --- AKI exclusions --------------------------------------------------------------------
    Archetype(
        "aki-malignancy",
        2,
        _AKI_AGE,
        _then(_aki_sev, _cond("C34.90", 730, "Malignant neoplasm of unspecified bronchus or lung")),
    ),
    Archetype(
        "aki-kidney-transplant",
        1,
        _AKI_AGE,
        _then(_aki_sev, _cond("Z94.0", 1500, "Kidney transplant status")),
    ),
    Archetype(
        "aki-hepatitis-b",
        1,
        _AKI_AGE,
        _then(_aki_sev, _cond("B18.1", 200, "Chronic viral hepatitis B without delta-agent")),
    ),
    Archetype(
        "aki-hepatitis-c",
        1,
        _AKI_AGE,
        _then(_aki_sev, _cond("B18.2", 200, "Chronic viral hepatitis C")),
    ),
    Archetype(
        "aki-hiv",
        1,
        _AKI_AGE,
        _then(_aki_sev, _cond("B20", 1200, "Human immunodeficiency virus [HIV] disease")),
    ),
    Archetype(
        "aki-tuberculosis",
        1,
        _AKI_AGE,
        _then(_aki_sev, _cond("A15.0", 40, "Tuberculosis of lung")),
    ),
    Archetype(
        "aki-cerebral-infarction",
        1,
        _AKI_AGE,
        _then(_aki_sev, _cond("I63.9", 60, "Cerebral infarction, unspecified")),
    ),
    Archetype(
        "aki-intracerebral-haemorrhage",
        1,
        _AKI_AGE,
        _then(_aki_sev, _cond("I61.9", 90, "Nontraumatic intracerebral hemorrhage, unspecified")),
    ),
    Archetype(
        "aki-prednisolone-14d",
        1,
        _AKI_AGE,
        _then(_aki_sev, _steroid("H02AB06", 14, "prednisolone")),
    ),
    Archetype(
        "aki-prednisone-7d", 1, _AKI_AGE, _then(_aki_sev, _steroid("H02AB07", 7, "prednisone"))
    ),
    Archetype(
        "aki-prednisone-8d", 1, _AKI_AGE, _then(_aki_sev, _steroid("H02AB07", 8, "prednisone"))
    ),
    Archetype(
        "aki-tacrolimus",
        1,
        _AKI_AGE,
        _then(_aki_sev, _steroid("L04AD02", 200, "tacrolimus", dose=4.0)),
    ),
    Archetype("aki-ast-high", 1, _AKI_AGE, _aki_with(panel={"ast": 320.0})),
    Archetype("aki-alt-high", 1, _AKI_AGE, _aki_with(panel={"alt": 260.0})),
    Archetype("aki-bilirubin-high", 1, _AKI_AGE, _aki_with(panel={"bilirubin_total": 80.0})),
    Archetype("aki-wbc-low", 1, _AKI_AGE, _aki_with(panel={"wbc": 1.5, "neutrophils": 1.2})),
    Archetype("aki-hb-low", 1, _AKI_AGE, _aki_with(panel={"hemoglobin": 55.0})),
    Archetype("aki-neutrophils-low", 1, _AKI_AGE, _aki_with(panel={"neutrophils": 0.8})),
    Archetype("aki-platelets-40", 1, _AKI_AGE, _aki_with(panel={"platelets": 40.0})),
    Archetype("aki-platelets-20", 1, _AKI_AGE, _aki_with(panel={"platelets": 20.0})),
    Archetype("aki-lvef-35", 1, _AKI_AGE, _aki_with(lvef=35.0)),
    Archetype(
        "aki-pregnant",
        1,
        (22.0, 40.0),
        _then(_aki_sev, _cond("O09.90", 60, "Supervision of high risk pregnancy, unspecified")),
        sex="female",
    ),
    Archetype(
        "aki-glomerulonephritis",
        1,
        _AKI_AGE,
        _then(_aki_sev, _cond("N05.9", 5, "Unspecified nephritic syndrome")),
    ),
    Archetype(
        "aki-lupus-nephritis",
        1,
        _AKI_AGE,
        _then(_aki_sev, _cond("M32.14", 400, "Glomerular disease in systemic lupus erythematosus")),
        sex="female",
    ),
    Archetype(
        "aki-anca-vasculitis",
        1,
        _AKI_AGE,
        _then(_aki_sev, _cond("M31.31", 20, "Wegener's granulomatosis with renal involvement")),
    ),
    Archetype(
        "aki-obstruction",
        1,
        _AKI_AGE,
        _then(_aki_sev, _cond("N13.9", 2, "Obstructive and reflux uropathy, unspecified")),
    ),
    Archetype(
        "aki-liver-failure",
        1,
        _AKI_AGE,
        _then(_aki_sev, _cond("K72.10", 300, "Chronic hepatic failure without coma")),
    ),
    Archetype(
        "aki-ventilated",
        1,
        _AKI_AGE,
        _then(
            _aki_sev,
            lambda p: p.procedure(
                ICD10PCS,
                "5A1955Z",
                T0 - 30 * _H,
                "Respiratory ventilation, greater than 96 consecutive hours",
            ),
        ),
    ),
    Archetype(
        "aki-ventricular-tachycardia",
        1,
        _AKI_AGE,
        _then(_aki_sev, _cond("I47.2", 100, "Ventricular tachycardia")),
    ),
    Archetype(
        "aki-stem-cell-transplant",
        1,
        _AKI_AGE,
        _then(_aki_sev, _cond("Z94.84", 1000, "Stem cells transplant status")),
    ),
    Archetype(
        "aki-history-of-cancer",
        1,
        _AKI_AGE,
        _then(_aki_sev, _cond("Z85.3", 2000, "Personal history of malignant neoplasm of breast")),
        sex="female",
    ),
    # --- boundary values -------------------------------------------------------------------
    Archetype("aki-age-18-today", 1, (18.0, 18.0), _aki_sev, birth=_birthday(18)),
    Archetype("aki-age-75-today", 1, (75.0, 75.0), _aki_sev, birth=_birthday(75)),
    Archetype("aki-platelets-50", 1, _AKI_AGE, _aki_with(panel={"platelets": 50.0})),
    Archetype("dkd-age-80-today", 1, (80.0, 80.0), _dkd, birth=_birthday(80)),
    Archetype("dkd-uacr-1000", 1, _DKD_AGE, _dkd_with(uacr=1000.0)),
    Archetype("htn-uacr-300", 1, _HTN_AGE, _htn_with(uacr=300.0)),
    # --- DKD variants and exclusions -------------------------------------------------------
    Archetype("dkd-uacr-800", 2, _DKD_AGE, _dkd_with(uacr=800.0)),
    Archetype("dkd-protein-not-continuous", 1, _DKD_AGE, _dkd_with(protein=(4.0, 2.8))),
    Archetype("dkd-hba1c-9.6", 1, _DKD_AGE, _dkd_with(hba1c=9.6)),
    Archetype("dkd-hba1c-9.0", 1, _DKD_AGE, _dkd_with(hba1c=9.0)),
    Archetype("dkd-bp-172-104", 1, _DKD_AGE, _dkd_with(bp=(172.0, 104.0))),
    Archetype("dkd-egfr-17", 1, _DKD_AGE, _dkd_with(egfr_now=17.0)),
    Archetype("dkd-egfr-12", 1, _DKD_AGE, _dkd_with(egfr_now=12.0)),
    Archetype("dkd-age-40", 1, (39.0, 42.0), _dkd),
    Archetype("dkd-type1-only", 1, (30.0, 60.0), _dkd_with(cause="t1")),
    Archetype(
        "dkd-atrial-fibrillation",
        1,
        _DKD_AGE,
        _then(_dkd, _cond("I48.0", 700, "Paroxysmal atrial fibrillation")),
    ),
    Archetype(
        "dkd-cerebral-infarction",
        1,
        _DKD_AGE,
        _then(_dkd, _cond("I63.9", 75, "Cerebral infarction, unspecified")),
    ),
    Archetype("dkd-triglycerides-7.1", 1, _DKD_AGE, _dkd_with(labs={"triglycerides": 7.1})),
    Archetype("dkd-ldl-4.6", 1, _DKD_AGE, _dkd_with(labs={"ldl": 4.6})),
    Archetype(
        "dkd-hyperkalaemia",
        1,
        _DKD_AGE,
        _then(_dkd_with(labs={"potassium": 6.6}), _cond("E87.5", 30, "Hyperkalemia")),
    ),
    Archetype(
        "dkd-hbv-dna",
        1,
        _DKD_AGE,
        _then(
            _dkd_with(labs={"hbv_dna": 5.0e4}),
            _cond("B18.1", 1000, "Chronic viral hepatitis B without delta-agent"),
        ),
    ),
    Archetype(
        "dkd-colon-cancer",
        1,
        _DKD_AGE,
        _then(_dkd, _cond("C18.7", 700, "Malignant neoplasm of sigmoid colon")),
    ),
    Archetype(
        "dkd-iv-antibiotic",
        1,
        _DKD_AGE,
        _then(
            _dkd,
            _cond("J18.9", 4, "Pneumonia, unspecified organism"),
            lambda p: p.medication(
                "J01DD04",
                T0 - 4 * _D,
                T0 + 3 * _D,
                "ceftriaxone",
                dose=2.0,
                dose_unit="g",
                route="intravenous",
            ),
        ),
    ),
    Archetype(
        "dkd-mycophenolate",
        1,
        _DKD_AGE,
        _then(_dkd, _steroid("L04AA06", 20, "mycophenolic acid", dose=1000.0)),
    ),
    Archetype(
        "dkd-iga-nephropathy",
        1,
        _DKD_AGE,
        _then(_dkd, _cond("N02.8", 900, "Recurrent and persistent hematuria, other")),
    ),
    Archetype("dkd-cea-12", 1, _DKD_AGE, _dkd_with(labs={"cea": 12.0})),
    Archetype(
        "dkd-transfusion",
        1,
        _DKD_AGE,
        _then(
            _dkd,
            lambda p: p.procedure(
                ICD10PCS,
                "30233N1",
                T0 - 12 * _D,
                "Transfusion of nonautologous red blood cells into peripheral vein",
            ),
        ),
    ),
    Archetype(
        "dkd-pulmonary-embolism",
        1,
        _DKD_AGE,
        _then(_dkd, _cond("I26.99", 800, "Other pulmonary embolism without acute cor pulmonale")),
    ),
    Archetype("dkd-hb-28", 1, _DKD_AGE, _dkd_with(labs={"hemoglobin": 28.0})),
    Archetype(
        "dkd-unstable-angina",
        1,
        _DKD_AGE,
        _then(_dkd, _cond("I20.0", 100, "Unstable angina")),
    ),
    Archetype(
        "dkd-congenital-heart",
        1,
        _DKD_AGE,
        _then(_dkd, _cond("Q21.1", 20000, "Atrial septal defect")),
    ),
    Archetype(
        "dkd-lacunar-infarction",
        1,
        _DKD_AGE,
        _then(_dkd, _cond("I63.81", 60, "Lacunar cerebral infarction (small artery)")),
    ),
    # --- hypertensive nephropathy variants -------------------------------------------------
    Archetype("htn-uacr-150", 2, _HTN_AGE, _htn_with(uacr=150.0)),
    Archetype("htn-egfr-60", 1, _HTN_AGE, _htn_with(egfr_now=60.0)),
    Archetype(
        "htn-adpkd",
        1,
        _HTN_AGE,
        _then(_htn_with(), _cond("Q61.2", 5000, "Polycystic kidney, adult type")),
    ),
    Archetype(
        "htn-kidney-transplant",
        1,
        _HTN_AGE,
        _then(_htn_with(), _cond("Z94.0", 2000, "Kidney transplant status")),
    ),
    Archetype(
        "htn-pregnant",
        1,
        (25.0, 40.0),
        _then(_htn_with(), _cond("Z33.1", 90, "Pregnant state, incidental")),
        sex="female",
    ),
    Archetype(
        "htn-pneumonia",
        1,
        _HTN_AGE,
        _then(_htn_with(), _cond("J18.9", 5, "Pneumonia, unspecified organism")),
    ),
    Archetype(
        "htn-opioid-dependence",
        1,
        _HTN_AGE,
        _then(_htn_with(), _cond("F11.20", 100, "Opioid dependence, uncomplicated")),
    ),
    Archetype(
        "htn-depression",
        1,
        _HTN_AGE,
        _then(_htn_with(), _cond("F32.9", 100, "Major depressive disorder, single episode")),
    ),
    Archetype(
        "htn-coagulation-defect",
        1,
        _HTN_AGE,
        _then(_htn_with(), _cond("D68.9", 1500, "Coagulation defect, unspecified")),
    ),
]


def _birth_date(rng: np.random.Generator, age: tuple[float, float]) -> dt.date:
    years = float(rng.uniform(*age))
    return DEMO_AS_OF.date() - dt.timedelta(days=int(years * 365.25))


def assign_archetypes(n_patients: int, rng: np.random.Generator) -> list[Archetype]:
    """One of each archetype first (in order), then weighted draws for the rest."""
    first = ARCHETYPES[:n_patients]
    rest = max(0, n_patients - len(ARCHETYPES))
    w = np.array([a.weight for a in ARCHETYPES], dtype=np.float64)
    idx = rng.choice(len(ARCHETYPES), size=rest, p=w / w.sum())
    return first + [ARCHETYPES[int(i)] for i in idx]


def generate(
    n_patients: int = 400, *, seed: int = 20260601
) -> tuple[pa.Table, dict[str, pa.Table], dict[str, str]]:
    """Generate the cohort in memory: (patients, events by record type, patient -> archetype)."""
    if n_patients < 1:
        raise ValueError("n_patients must be >= 1")
    rng = np.random.default_rng(seed)
    kinds = assign_archetypes(n_patients, rng)
    patients: list[dict[str, Any]] = []
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    archetype_of: dict[str, str] = {}
    for i, arch in enumerate(kinds, start=1):
        pid = f"demo-p{i:04d}"
        sex = arch.sex or ("female" if rng.random() < 0.45 else "male")
        birth = None if arch.unknown_birth_date else arch.birth or _birth_date(rng, arch.age)
        p = _Patient(pid, birth, sex, rng)
        arch.build(p)
        archetype_of[pid] = arch.name
        patients.append(
            {
                "patient_id": pid,
                "birth_date": birth,
                "sex": sex,
                "deceased_date": None,
                "source": f"demo/Patient/{pid}",
            }
        )
        for rt, rows in p.rows.items():
            events[rt].extend(rows)
    pt = pa.Table.from_pylist(patients, schema=PATIENTS_SCHEMA)
    ev = {
        rt: pa.Table.from_pylist([_full(r) for r in rows], schema=EVENTS_SCHEMA)
        for rt, rows in sorted(events.items())
    }
    return pt, ev, archetype_of


def _full(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in EVENTS_SCHEMA.names}


def build_demo_store(
    store_dir: Path, *, n_patients: int = 400, seed: int = 20260601
) -> IngestSummary:
    """Write the demo cohort into ``store_dir`` (dataset ``demo``); return the ingest summary."""
    patients, events, _ = generate(n_patients, seed=seed)
    writer = StoreWriter(Path(store_dir), DEMO_DATASET)
    writer.source_path = f"trialsieve.demo.cohort (seed={seed}, n_patients={n_patients})"
    writer.source_format = "generated"
    writer.count_read("Patient", patients.num_rows)
    writer.patients(patients, "Patient")
    for rt, table in events.items():
        writer.count_read(rt, len(set(table.column("source").to_pylist())))
        writer.events(table, rt)
    return writer.close()
