"""Back-calculated baseline creatinine from an assumed eGFR.

When no pre-admission creatinine is known, KDIGO 2012 (Clinical Practice Guideline for AKI,
Kidney Int Suppl 2012;2:1-138, section 2.4 and Table 9, following the ADQI 2004 consensus,
Bellomo R et al. Crit Care 2004;8:R204) estimates it by solving the MDRD equation for creatinine
at an assumed eGFR of 75 mL/min/1.73 m². The NCT06954740 protocol uses the same rule ("estimated
using the MDRD equation under the assumption that the baseline eGFR is 75 ml/min/1.73m²").

Solving MDRD-175 (IDMS) for creatinine:
Scr [mg/dL] = (eGFR / (175 × age^-0.203 × 0.742 [female])) ^ (1 / -1.154).
The race factor is not applied (off by default throughout trialsieve).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from trialsieve.kidney.creatinine import UMOL_PER_MGDL
from trialsieve.kidney.egfr import EQUATIONS, Mdrd

#: assumed baseline eGFR, mL/min/1.73 m² (KDIGO 2012 / ADQI)
ASSUMED_EGFR: Final[float] = 75.0

_MDRD = EQUATIONS["mdrd-175"]
assert isinstance(_MDRD, Mdrd)


def backcalc_creatinine_mg_dl(
    age_years: npt.ArrayLike,
    female: npt.ArrayLike,
    *,
    assumed_egfr: float = ASSUMED_EGFR,
) -> npt.NDArray[np.float64]:
    """Creatinine (mg/dL) at which MDRD-175 gives ``assumed_egfr`` for this age and sex."""
    age = np.asarray(age_years, dtype=np.float64)
    fem = np.where(np.asarray(female, dtype=bool), _MDRD.female, 1.0)
    denom = _MDRD.k * age**_MDRD.age_exp * fem
    return np.asarray((assumed_egfr / denom) ** (1.0 / _MDRD.scr_exp), dtype=np.float64)


def backcalc_creatinine_umol_l(
    age_years: npt.ArrayLike,
    female: npt.ArrayLike,
    *,
    assumed_egfr: float = ASSUMED_EGFR,
) -> npt.NDArray[np.float64]:
    """As :func:`backcalc_creatinine_mg_dl`, in µmol/L."""
    mg = backcalc_creatinine_mg_dl(age_years, female, assumed_egfr=assumed_egfr)
    return mg * UMOL_PER_MGDL


def backcalc_creatinine_sql(
    age_years: str, female: str, *, assumed_egfr: float = ASSUMED_EGFR
) -> str:
    """SQL expression (µmol/L) of :func:`backcalc_creatinine_umol_l`; portable DuckDB/Spark."""
    fem = f"(CASE WHEN {female} THEN {_MDRD.female!r} ELSE 1.0 END)"
    denom = f"({_MDRD.k!r} * POWER(({age_years}), {_MDRD.age_exp!r}) * {fem})"
    return f"(POWER({assumed_egfr!r} / {denom}, {1.0 / _MDRD.scr_exp!r}) * {UMOL_PER_MGDL!r})"
