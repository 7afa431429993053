"""Units and plausibility per analyte: an explicit, tested table (no unit library guesses).

Canonical units are those of ``docs/STORE.md``. Each analyte maps every unit spelling seen in
FHIR/UCUM, OMOP and MIMIC to a factor (or a conversion function) into the canonical unit.
Molar-mass based factors are written out with their source:

- creatinine mg/dL -> umol/L: ``trialsieve.kidney.creatinine.UMOL_PER_MGDL`` (molar mass
  113.12 g/mol; KDIGO 2012 CKD guideline, units note).
- UACR mg/mmol -> mg/g: x(10 000 / 113.12 / 10) = x8.84 (KDIGO 2012 CKD guideline, Table 7).
- bilirubin mg/dL -> umol/L: x17.1 (molar mass 584.66 g/mol; SI conversion tables, AMA Manual
  of Style).
- cholesterol (total, LDL, HDL) mg/dL -> mmol/L: /38.67; triglycerides mg/dL -> mmol/L: /88.57
  (NCEP ATP III, SI conversion).
- haemoglobin mmol/L (monomer, Fe) -> g/L: x16.1 (molar mass 16 114.5 g/mol per haem; ICSH).
- HbA1c IFCC mmol/mol -> NGSP %: % = 0.09148 * mmol/mol + 2.152 (IFCC-NGSP master equation,
  Hoelzel et al., Clin Chem 2004;50:166).
- AST/ALT ukat/L -> U/L: x60 (1 katal = 6e7 U; IUPAC).
- blood pressure kPa -> mm[Hg]: x7.50062 (SI definition of mmHg).
- AFP IU/mL -> ng/mL: x1.21 (WHO 1st IS 72/225).
- HBV DNA copies/mL -> IU/mL: /5.4 (WHO 1st IS 97/746, Roche COBAS TaqMan conversion).

Plausibility ranges are physiological limits beyond which a value is a data error (not a clinical
extreme); a value outside is rejected with the reason, never clipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

Conversion = float | Callable[[float], float]


class UnitError(ValueError):
    """A unit that the analyte's table does not know (or an unknown analyte)."""


class PlausibilityError(ValueError):
    """A value outside the analyte's plausible range (in the canonical unit)."""


def _creatinine_umol_per_mgdl() -> float:
    from trialsieve.kidney.creatinine import UMOL_PER_MGDL  # single source of the 88.4 factor

    return float(UMOL_PER_MGDL)


def _crea_mgdl(v: float) -> float:
    return v * _creatinine_umol_per_mgdl()


def _crea_mgl(v: float) -> float:
    return v * _creatinine_umol_per_mgdl() / 10.0


def _uacr_mg_per_mmol(v: float) -> float:
    # 1 mmol creatinine = 113.12 mg = 10 000 / UMOL_PER_MGDL mg:
    # mg/mmol x UMOL_PER_MGDL / 10 = mg/g
    return v * _creatinine_umol_per_mgdl() / 10.0


def _hba1c_ifcc(v: float) -> float:
    return 0.09148 * v + 2.152


def _log10_to_linear(v: float) -> float:
    return 10.0**v


@dataclass(frozen=True)
class Analyte:
    """One analyte: canonical unit, accepted unit spellings, plausible range, default limits."""

    name: str
    canonical_unit: str
    factors: dict[str, Conversion]
    plausible: tuple[float, float]
    default_uln: float | None = None
    default_lln: float | None = None
    limits_source: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)


def normalize_unit(unit: str) -> str:
    """Spelling-insensitive unit key: lower case, no spaces, micro sign -> u, ^ and x10 unified."""
    u = unit.strip().lower().replace(" ", "")
    for micro in ("\u00b5", "\u03bc", "mc"):
        if u.startswith(micro) or "/" + micro in u:
            u = u.replace(micro, "u")
    u = u.replace("^", "*").replace("x10e", "10*").replace("x10*", "10*").replace("10e", "10*")
    u = u.replace("[iu]", "iu").replace("{", "").replace("}", "")
    return u


_CELL = {
    # 10*9/L and every count-per-volume spelling that equals it
    "10*9/l": 1.0, "10*3/ul": 1.0, "10*3/mm3": 1.0, "k/ul": 1.0, "/nl": 1.0, "thou/ul": 1.0,
    "10*3/microl": 1.0, "1000/ul": 1.0, "g/l": 1.0, "/ul": 1e-3, "/mm3": 1e-3, "cells/ul": 1e-3,
    "10*6/l": 1e-3, "10*6/ml": 1.0,
}  # fmt: skip
_CHOL: dict[str, Conversion] = {"mmol/l": 1.0, "mg/dl": 1 / 38.67, "mg/l": 1 / 386.7}
_PERCENT: dict[str, Conversion] = {"%": 1.0, "percent": 1.0}
_NG_ML: dict[str, Conversion] = {"ng/ml": 1.0, "ug/l": 1.0, "mg/l": 1000.0}
_U_ML: dict[str, Conversion] = {"u/ml": 1.0, "ku/l": 1.0, "iu/ml": 1.0, "units/ml": 1.0}
_ENZ: dict[str, Conversion] = {"u/l": 1.0, "iu/l": 1.0, "units/l": 1.0, "ukat/l": 60.0}

_TABLE: list[Analyte] = [
    Analyte("creatinine", "umol/L",
            {"umol/l": 1.0, "mmol/l": 1000.0, "mg/dl": _crea_mgdl, "mg/l": _crea_mgl},
            (5.0, 3000.0)),
    Analyte("cystatin_c", "mg/L", {"mg/l": 1.0, "mg/dl": 10.0, "ug/ml": 1.0}, (0.1, 15.0),
            default_uln=1.03, limits_source="IFCC ERM-DA471 based adult reference 0.62-1.03 mg/L"),
    Analyte("egfr_reported", "mL/min/1.73m2",
            {"ml/min/1.73m2": 1.0, "ml/min/1.73.m2": 1.0, "ml/min/1.73m*2": 1.0,
             "ml/min/1.73sqm": 1.0, "ml/min/{1.73_m2}": 1.0, "ml/min/1.73_m2": 1.0,
             "ml/min": 1.0, "ml/min/1.73": 1.0},
            (0.0, 250.0)),
    Analyte("uacr", "mg/g",
            {"mg/g": 1.0, "mg/gcreat": 1.0, "mg/gcre": 1.0, "ug/mg": 1.0, "ug/mgcreat": 1.0,
             "mg/mmol": _uacr_mg_per_mmol, "mg/mmolcreat": _uacr_mg_per_mmol, "g/g": 1000.0,
             "g/mol": _uacr_mg_per_mmol, "g/molcreat": _uacr_mg_per_mmol},
            (0.0, 100_000.0), default_uln=30.0,
            limits_source="KDIGO 2012 CKD: A1 < 30 mg/g"),
    Analyte("urine_protein_24h", "g/24h",
            {"g/24h": 1.0, "g/(24.h)": 1.0, "g/d": 1.0, "g/24hr": 1.0, "g/day": 1.0,
             "mg/24h": 1e-3, "mg/(24.h)": 1e-3, "mg/d": 1e-3, "mg/24hr": 1e-3, "mg/day": 1e-3},
            (0.0, 50.0), default_uln=0.15, limits_source="KDIGO 2012 CKD: normal < 150 mg/24h"),
    Analyte("hba1c", "%",
            {"%": 1.0, "%ngsp": 1.0, "%hb": 1.0, "%total": 1.0, "%ofhb": 1.0,
             "mmol/mol": _hba1c_ifcc, "mmol/molhb": _hba1c_ifcc},
            (2.0, 25.0)),
    Analyte("hemoglobin", "g/L", {"g/l": 1.0, "g/dl": 10.0, "mg/dl": 0.01, "mmol/l": 16.1},
            (20.0, 260.0), default_lln=120.0, limits_source="WHO 2011 anaemia threshold (women)"),
    Analyte("platelets", "10*9/L", dict(_CELL), (0.0, 5000.0), default_lln=150.0,
            default_uln=400.0, limits_source="common adult reference 150-400 x10^9/L"),
    Analyte("wbc", "10*9/L", dict(_CELL), (0.0, 1000.0), default_lln=4.0, default_uln=11.0,
            limits_source="common adult reference 4-11 x10^9/L"),
    Analyte("neutrophils", "10*9/L", dict(_CELL), (0.0, 500.0), default_lln=1.5,
            limits_source="CTCAE v5 neutrophil count decreased grade 2 (< 1.5 x10^9/L)"),
    Analyte("ast", "U/L", dict(_ENZ), (0.0, 50_000.0), default_uln=40.0,
            limits_source="common adult reference (ULN 40 U/L)"),
    Analyte("alt", "U/L", dict(_ENZ), (0.0, 50_000.0), default_uln=40.0,
            limits_source="common adult reference (ULN 40 U/L)"),
    Analyte("bilirubin_total", "umol/L", {"umol/l": 1.0, "mg/dl": 17.1, "mg/l": 1.71},
            (0.0, 1500.0), default_uln=21.0, limits_source="adult reference < 21 umol/L"),
    Analyte("potassium", "mmol/L", {"mmol/l": 1.0, "meq/l": 1.0}, (1.0, 12.0),
            default_lln=3.5, default_uln=5.0, limits_source="adult reference 3.5-5.0 mmol/L"),
    Analyte("cholesterol_total", "mmol/L", dict(_CHOL), (0.5, 40.0)),
    Analyte("ldl", "mmol/L", dict(_CHOL), (0.0, 30.0)),
    Analyte("hdl", "mmol/L", dict(_CHOL), (0.0, 10.0)),
    Analyte("triglycerides", "mmol/L", {"mmol/l": 1.0, "mg/dl": 1 / 88.57, "mg/l": 1 / 885.7},
            (0.0, 150.0)),
    Analyte("sbp", "mm[Hg]", {"mm[hg]": 1.0, "mmhg": 1.0, "mm(hg)": 1.0, "kpa": 7.50062},
            (30.0, 320.0)),
    Analyte("dbp", "mm[Hg]", {"mm[hg]": 1.0, "mmhg": 1.0, "mm(hg)": 1.0, "kpa": 7.50062},
            (5.0, 250.0)),
    Analyte("weight", "kg",
            {"kg": 1.0, "g": 1e-3, "[lb_av]": 0.45359237, "lb": 0.45359237, "lbs": 0.45359237,
             "[oz_av]": 0.028349523125, "oz": 0.028349523125},
            (0.2, 500.0)),
    Analyte("urine_volume", "mL", {"ml": 1.0, "l": 1000.0, "cc": 1.0, "dl": 100.0},
            (0.0, 20_000.0)),
    Analyte("lvef", "%", dict(_PERCENT), (3.0, 95.0), default_lln=50.0,
            limits_source="ASE/EACVI 2015 chamber quantification (LVEF >= 52-54%); HFrEF < 40%"),
    Analyte("afp", "ng/mL", {**_NG_ML, "iu/ml": 1.21, "kiu/l": 1.21}, (0.0, 1e7),
            default_uln=10.0, limits_source="common adult reference < 10 ng/mL"),
    Analyte("cea", "ng/mL", dict(_NG_ML), (0.0, 1e6), default_uln=5.0,
            limits_source="common adult reference < 5 ng/mL"),
    Analyte("ca19_9", "U/mL", dict(_U_ML), (0.0, 1e7), default_uln=37.0,
            limits_source="common reference < 37 U/mL"),
    Analyte("ca125", "U/mL", dict(_U_ML), (0.0, 1e6), default_uln=35.0,
            limits_source="common reference < 35 U/mL"),
    Analyte("hbv_dna", "IU/mL",
            {"iu/ml": 1.0, "copies/ml": 1 / 5.4, "log10iu/ml": _log10_to_linear,
             "logiu/ml": _log10_to_linear},
            (0.0, 1e11)),
    Analyte("hcv_rna", "IU/mL",
            {"iu/ml": 1.0, "log10iu/ml": _log10_to_linear, "logiu/ml": _log10_to_linear},
            (0.0, 1e10)),
    Analyte("hcg", "IU/L", {"iu/l": 1.0, "miu/ml": 1.0, "u/l": 1.0, "iu/ml": 1000.0},
            (0.0, 1e7)),
]  # fmt: skip

ANALYTES: dict[str, Analyte] = {a.name: a for a in _TABLE}


def _analyte(analyte: str) -> Analyte:
    try:
        return ANALYTES[analyte]
    except KeyError:
        raise UnitError(f"unknown analyte {analyte!r}") from None


def canonical_unit(analyte: str) -> str:
    """The canonical unit of ``analyte`` (docs/STORE.md)."""
    return _analyte(analyte).canonical_unit


@lru_cache(maxsize=4096)
def conversion(analyte: str, unit: str | None) -> Conversion:
    """How a value in ``unit`` becomes the canonical unit of ``analyte``: a factor, or a
    function for offset units; raises UnitError naming the analyte and the unit."""
    a = _analyte(analyte)
    if unit is None or not unit.strip():
        raise UnitError(f"{analyte}: missing unit (canonical unit is {a.canonical_unit})")
    key = normalize_unit(unit)
    if key == normalize_unit(a.canonical_unit):
        return 1.0
    conv = a.factors.get(key)
    if conv is None:
        raise UnitError(f"{analyte}: unknown unit {unit!r} (canonical unit {a.canonical_unit})")
    return conv


def to_canonical(analyte: str, value: float, unit: str | None) -> float:
    """Convert ``value`` in ``unit`` to the canonical unit of ``analyte``.

    Raises UnitError naming the analyte and the unit when the unit is not in the table.
    """
    conv = conversion(analyte, unit)
    if isinstance(conv, float):
        return value * conv
    return conv(value)


def check_plausible(analyte: str, value: float) -> None:
    """Raise PlausibilityError when ``value`` (canonical unit) is outside the plausible range."""
    a = _analyte(analyte)
    low, high = a.plausible
    if math.isnan(value) or not (low <= value <= high):
        raise PlausibilityError(
            f"{analyte}: implausible value {value:g} {a.canonical_unit} "
            f"(plausible range {low:g}..{high:g} {a.canonical_unit})"
        )


def default_uln(analyte: str) -> float | None:
    """A default upper limit of normal (canonical unit) when the source gives no range."""
    return _analyte(analyte).default_uln


def default_lln(analyte: str) -> float | None:
    """A default lower limit of normal (canonical unit) when the source gives no range."""
    return _analyte(analyte).default_lln
