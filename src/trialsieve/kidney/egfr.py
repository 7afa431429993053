"""Estimated GFR equations, vectorised (numpy) and as portable SQL expressions.

Each equation is written once, as coefficients in :data:`EQUATIONS`; :func:`egfr` evaluates them on
numpy columns and :func:`egfr_sql` renders the identical formula as SQL text (``POWER``, ``LEAST``,
``GREATEST``, ``CASE``), so a million patients screened in DuckDB or Spark get the same number a
clinician gets for one patient from the CLI.

Sources (serum creatinine in mg/dL, IDMS-traceable; cystatin C in mg/L; age in years):

- **CKD-EPI 2009 creatinine** — Levey AS et al. A new equation to estimate glomerular filtration
  rate. Ann Intern Med 2009;150:604-612.
  141 × min(Scr/κ,1)^α × max(Scr/κ,1)^-1.209 × 0.993^age × 1.018 [female] × 1.159 [Black];
  κ = 0.7 (F) / 0.9 (M); α = -0.329 (F) / -0.411 (M).
- **CKD-EPI 2021 creatinine (race-free)** — Inker LA et al. New creatinine- and cystatin C-based
  equations to estimate GFR without race. N Engl J Med 2021;385:1737-1749.
  142 × min(Scr/κ,1)^α × max(Scr/κ,1)^-1.200 × 0.9938^age × 1.012 [female];
  κ = 0.7 / 0.9; α = -0.241 (F) / -0.302 (M).
- **CKD-EPI 2021 creatinine–cystatin C** — Inker 2021 (same paper).
  135 × min(Scr/κ,1)^α × max(Scr/κ,1)^-0.544 × min(Scys/0.8,1)^-0.323 × max(Scys/0.8,1)^-0.778
  × 0.9961^age × 0.963 [female]; κ = 0.7 / 0.9; α = -0.219 (F) / -0.144 (M).
- **MDRD-175 (IDMS-traceable)** — Levey AS et al. Expressing the MDRD study equation for estimating
  GFR with standardized serum creatinine values. Clin Chem 2007;53:766-772.
  175 × Scr^-1.154 × age^-0.203 × 0.742 [female] × 1.212 [Black].
- **MDRD-186 (original 4-variable)** — Levey AS et al. A simplified equation to predict GFR from
  serum creatinine. J Am Soc Nephrol 2000;11:155A.
  186 × Scr^-1.154 × age^-0.203 × 0.742 [female] × 1.210 [Black].

The race coefficient is off unless ``black=True`` is given (KDIGO 2024 CKD guideline recommends the
race-free CKD-EPI 2021 equations); the 2021 equations have none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from trialsieve.kidney.creatinine import UMOL_PER_MGDL


@dataclass(frozen=True)
class CkdEpi:
    """Coefficients of a CKD-EPI equation (creatinine, optionally with cystatin C)."""

    k: float
    kappa_f: float
    kappa_m: float
    alpha_f: float
    alpha_m: float
    beta: float
    age_base: float
    female: float
    black: float = 1.0
    cys_alpha: float | None = None
    cys_beta: float | None = None
    cys_kappa: float = 0.8


@dataclass(frozen=True)
class Mdrd:
    """Coefficients of an MDRD equation."""

    k: float
    scr_exp: float
    age_exp: float
    female: float
    black: float


Equation = CkdEpi | Mdrd

#: equation name -> coefficients (the single source of every eGFR number in trialsieve)
EQUATIONS: Final[dict[str, Equation]] = {
    "ckd-epi-2009": CkdEpi(141, 0.7, 0.9, -0.329, -0.411, -1.209, 0.993, 1.018, black=1.159),
    "ckd-epi-2021": CkdEpi(142, 0.7, 0.9, -0.241, -0.302, -1.200, 0.9938, 1.012),
    "ckd-epi-2021-cys": CkdEpi(
        135, 0.7, 0.9, -0.219, -0.144, -0.544, 0.9961, 0.963, cys_alpha=-0.323, cys_beta=-0.778
    ),
    "mdrd-175": Mdrd(175, -1.154, -0.203, 0.742, 1.212),
    "mdrd-186": Mdrd(186, -1.154, -0.203, 0.742, 1.210),
}

FloatArray = npt.NDArray[np.float64]


def needs_cystatin(equation: str) -> bool:
    """True when ``equation`` needs a cystatin C value."""
    eq = _get(equation)
    return isinstance(eq, CkdEpi) and eq.cys_alpha is not None


def _get(equation: str) -> Equation:
    try:
        return EQUATIONS[equation]
    except KeyError:
        raise ValueError(
            f"unknown eGFR equation {equation!r} (one of {', '.join(EQUATIONS)})"
        ) from None


def egfr(
    equation: str,
    creatinine_mg_dl: npt.ArrayLike,
    age_years: npt.ArrayLike,
    female: npt.ArrayLike,
    *,
    cystatin_c_mg_l: npt.ArrayLike | None = None,
    black: npt.ArrayLike = False,
) -> FloatArray:
    """eGFR in mL/min/1.73 m² (unrounded) for columns of patients.

    ``creatinine_mg_dl`` in mg/dL (convert µmol/L with :mod:`trialsieve.kidney.creatinine`),
    ``female`` and ``black`` boolean columns, ``cystatin_c_mg_l`` only for ``ckd-epi-2021-cys``.
    Missing inputs (NaN) give NaN.
    """
    eq = _get(equation)
    scr = np.asarray(creatinine_mg_dl, dtype=np.float64)
    age = np.asarray(age_years, dtype=np.float64)
    fem = np.asarray(female, dtype=bool)
    blk = np.asarray(black, dtype=bool)
    if isinstance(eq, Mdrd):
        return (
            eq.k
            * scr**eq.scr_exp
            * age**eq.age_exp
            * np.where(fem, eq.female, 1.0)
            * np.where(blk, eq.black, 1.0)
        )
    kappa = np.where(fem, eq.kappa_f, eq.kappa_m)
    alpha = np.where(fem, eq.alpha_f, eq.alpha_m)
    r = scr / kappa
    out = (
        eq.k
        * np.minimum(r, 1.0) ** alpha
        * np.maximum(r, 1.0) ** eq.beta
        * eq.age_base**age
        * np.where(fem, eq.female, 1.0)
        * np.where(blk, eq.black, 1.0)
    )
    if eq.cys_alpha is not None and eq.cys_beta is not None:
        if cystatin_c_mg_l is None:
            raise ValueError(f"{equation} needs cystatin C")
        c = np.asarray(cystatin_c_mg_l, dtype=np.float64) / eq.cys_kappa
        out = out * np.minimum(c, 1.0) ** eq.cys_alpha * np.maximum(c, 1.0) ** eq.cys_beta
    return np.asarray(out, dtype=np.float64)


def egfr_sql(
    equation: str,
    creatinine_umol_l: str,
    age_years: str,
    female: str,
    *,
    cystatin_c_mg_l: str | None = None,
    black: str = "FALSE",
) -> str:
    """The same equation as a SQL expression over column expressions.

    ``creatinine_umol_l`` is a SQL expression in µmol/L (the store's canonical unit), ``female``
    and ``black`` boolean SQL expressions, ``age_years`` a fractional-years expression. Portable
    between DuckDB and Spark SQL.
    """
    eq = _get(equation)
    scr = f"(({creatinine_umol_l}) / {UMOL_PER_MGDL!r})"

    def sex(f_val: float, m_val: float) -> str:
        return f"(CASE WHEN {female} THEN {f_val!r} ELSE {m_val!r} END)"

    blk = f"(CASE WHEN {black} THEN {eq.black!r} ELSE 1.0 END)"
    if isinstance(eq, Mdrd):
        return (
            f"({eq.k!r} * POWER({scr}, {eq.scr_exp!r}) * POWER(({age_years}), {eq.age_exp!r})"
            f" * {sex(eq.female, 1.0)} * {blk})"
        )
    r = f"({scr} / {sex(eq.kappa_f, eq.kappa_m)})"
    expr = (
        f"{eq.k!r} * POWER(LEAST({r}, 1.0), {sex(eq.alpha_f, eq.alpha_m)})"
        f" * POWER(GREATEST({r}, 1.0), {eq.beta!r}) * POWER({eq.age_base!r}, ({age_years}))"
        f" * {sex(eq.female, 1.0)} * {blk}"
    )
    if eq.cys_alpha is not None:
        if cystatin_c_mg_l is None:
            raise ValueError(f"{equation} needs cystatin C")
        c = f"(({cystatin_c_mg_l}) / {eq.cys_kappa!r})"
        expr += (
            f" * POWER(LEAST({c}, 1.0), {eq.cys_alpha!r})"
            f" * POWER(GREATEST({c}, 1.0), {eq.cys_beta!r})"
        )
    return f"({expr})"
