"""Kidney trajectories for the synthetic population: pure numpy functions, no I/O.

- Creatinine from a target eGFR: the closed-form inverse of CKD-EPI 2021 (Inker LA et al.
  N Engl J Med 2021;385:1737-1749), the same equation that :mod:`trialsieve.kidney.egfr` applies,
  so that a generated CKD stage is the stage the screening engine computes (up to lab noise).
- Cystatin C from a target eGFR: inverse of CKD-EPI 2012 cystatin C (Inker LA et al. N Engl J Med
  2012;367:20-29): 133 x min(Scys/0.8,1)^-0.499 x max(Scys/0.8,1)^-1.328 x 0.996^age x 0.932 [F].
- An AKI episode multiplies the baseline creatinine by a factor that rises linearly from onset to
  the peak ratio over ``hours_to_peak`` hours (KDIGO 2012 AKI guideline: a rise over hours to
  days) and then falls back towards baseline (recovery half-life ``half_life_h``), leaving a
  residual fraction (incomplete recovery).
- Urine output is hourly mL/kg/h; oliguria is < 0.5 mL/kg/h (KDIGO 2012, Table 2).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from trialsieve.kidney.creatinine import UMOL_PER_MGDL

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

YEAR_S = 365.25 * 86400.0


def creatinine_for_egfr(egfr: FloatArray, age: FloatArray, female: BoolArray) -> FloatArray:
    """Serum creatinine (umol/L) at which CKD-EPI 2021 gives ``egfr`` (mL/min/1.73 m2).

    CKD-EPI 2021: 142 x min(S/k,1)^a x max(S/k,1)^-1.200 x 0.9938^age x 1.012 [female],
    k = 0.7 (F) / 0.9 (M), a = -0.241 (F) / -0.302 (M), S in mg/dL. With
    C = 142 x 0.9938^age x 1.012[F]: S/k = (eGFR/C)^(1/a) when eGFR >= C, else (eGFR/C)^(-1/1.2).
    """
    c = 142.0 * np.power(0.9938, age) * np.where(female, 1.012, 1.0)
    kappa = np.where(female, 0.7, 0.9)
    alpha = np.where(female, -0.241, -0.302)
    r = np.asarray(egfr, dtype=np.float64) / c
    ratio = np.where(r >= 1.0, np.power(r, 1.0 / alpha), np.power(r, -1.0 / 1.2))
    return ratio * kappa * UMOL_PER_MGDL


def cystatin_for_egfr(egfr: FloatArray, age: FloatArray, female: BoolArray) -> FloatArray:
    """Cystatin C (mg/L) at which CKD-EPI 2012 cystatin C gives ``egfr`` (inverse, closed form)."""
    c = 133.0 * np.power(0.996, age) * np.where(female, 0.932, 1.0)
    r = np.asarray(egfr, dtype=np.float64) / c
    ratio = np.where(r >= 1.0, np.power(r, -1.0 / 0.499), np.power(r, -1.0 / 1.328))
    return ratio * 0.8


def egfr_at(
    t: FloatArray, t_end: FloatArray, egfr_end: FloatArray, slope_per_year: FloatArray
) -> FloatArray:
    """Linear eGFR trajectory ending at ``egfr_end`` at ``t_end`` (times in epoch seconds).

    ``slope_per_year`` is negative for a decline; values are floored at 4 mL/min/1.73 m2 and
    capped at 130 (the plausible range of adult GFR).
    """
    years_before = (t_end - t) / YEAR_S
    return np.clip(egfr_end - slope_per_year * years_before, 4.0, 130.0)


def aki_factor(
    hours_from_onset: FloatArray,
    peak_ratio: FloatArray,
    hours_to_peak: FloatArray,
    half_life_h: FloatArray,
    residual: FloatArray,
) -> FloatArray:
    """Multiplier of the baseline creatinine during an AKI episode (1 before the onset).

    Linear rise from 1 at onset to ``peak_ratio`` at ``hours_to_peak``; after the peak an
    exponential return towards ``1 + residual`` with half-life ``half_life_h``.
    """
    h = np.asarray(hours_from_onset, dtype=np.float64)
    rising = 1.0 + (peak_ratio - 1.0) * np.clip(h / hours_to_peak, 0.0, 1.0)
    after = np.maximum(h - hours_to_peak, 0.0)
    floor = 1.0 + residual
    falling = floor + (peak_ratio - floor) * np.power(0.5, after / half_life_h)
    return np.where(h <= 0.0, 1.0, np.where(h <= hours_to_peak, rising, falling))


def urine_rate(
    hours_from_onset: FloatArray,
    oliguric: BoolArray,
    oliguria_start_h: FloatArray,
    oliguria_hours: FloatArray,
    oliguric_rate: FloatArray,
    normal_rate: FloatArray,
) -> FloatArray:
    """Hourly urine output (mL/kg/h): ``oliguric_rate`` inside the oliguric period, else normal."""
    inside = (
        oliguric
        & (hours_from_onset >= oliguria_start_h)
        & (hours_from_onset < oliguria_start_h + oliguria_hours)
    )
    return np.where(inside, oliguric_rate, normal_rate)
