"""eGFR equations against the published formulas, published numbers, knots, SQL and properties.

Reference values are computed here independently with plain :mod:`math` from each paper's
formula (not by calling :func:`trialsieve.kidney.egfr.egfr`):

- CKD-EPI 2009: Levey AS et al. Ann Intern Med 2009;150:604-612.
  141 × min(Scr/κ,1)^α × max(Scr/κ,1)^-1.209 × 0.993^age × 1.018 [F] × 1.159 [Black];
  κ 0.7 F / 0.9 M; α -0.329 F / -0.411 M.
- CKD-EPI 2021 creatinine: Inker LA et al. N Engl J Med 2021;385:1737-1749.
  142 × min(Scr/κ,1)^α × max(Scr/κ,1)^-1.200 × 0.9938^age × 1.012 [F]; α -0.241 F / -0.302 M.
- CKD-EPI 2021 creatinine-cystatin C: Inker 2021.
  135 × min(Scr/κ,1)^α × max(Scr/κ,1)^-0.544 × min(Scys/0.8,1)^-0.323 × max(Scys/0.8,1)^-0.778
  × 0.9961^age × 0.963 [F]; α -0.219 F / -0.144 M.
- MDRD-175 (IDMS): Levey AS et al. Clin Chem 2007;53:766-772 (and Ann Intern Med 2006;145:247).
  175 × Scr^-1.154 × age^-0.203 × 0.742 [F] × 1.212 [Black].
- MDRD-186: Levey AS et al. J Am Soc Nephrol 2000;11:155A.
  186 × Scr^-1.154 × age^-0.203 × 0.742 [F] × 1.210 [Black].
"""

from __future__ import annotations

import itertools
import math

import duckdb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trialsieve.kidney.creatinine import UMOL_PER_MGDL
from trialsieve.kidney.egfr import EQUATIONS, egfr, egfr_sql, needs_cystatin

ALL = ["ckd-epi-2009", "ckd-epi-2021", "ckd-epi-2021-cys", "mdrd-175", "mdrd-186"]


# --- independent reference implementations (plain math, straight from the papers) -------------


def ref_ckd_epi_2009(scr: float, age: float, female: bool, black: bool = False) -> float:
    kappa, alpha = (0.7, -0.329) if female else (0.9, -0.411)
    value = (
        141
        * min(scr / kappa, 1) ** alpha
        * max(scr / kappa, 1) ** -1.209
        * 0.993**age
        * (1.018 if female else 1)
    )
    return value * (1.159 if black else 1)


def ref_ckd_epi_2021(scr: float, age: float, female: bool) -> float:
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    return (
        142
        * min(scr / kappa, 1) ** alpha
        * max(scr / kappa, 1) ** -1.200
        * 0.9938**age
        * (1.012 if female else 1)
    )


def ref_ckd_epi_2021_cys(scr: float, scys: float, age: float, female: bool) -> float:
    kappa, alpha = (0.7, -0.219) if female else (0.9, -0.144)
    return (
        135
        * min(scr / kappa, 1) ** alpha
        * max(scr / kappa, 1) ** -0.544
        * min(scys / 0.8, 1) ** -0.323
        * max(scys / 0.8, 1) ** -0.778
        * 0.9961**age
        * (0.963 if female else 1)
    )


def ref_mdrd(
    k: float, black_factor: float, scr: float, age: float, female: bool, black: bool
) -> float:
    return k * scr**-1.154 * age**-0.203 * (0.742 if female else 1) * (black_factor if black else 1)


def ref(
    equation: str, scr: float, age: float, female: bool, black: bool = False, cys: float = 1.0
) -> float:
    """Reference eGFR for any of the five equations (race factor only where one exists)."""
    if equation == "ckd-epi-2009":
        return ref_ckd_epi_2009(scr, age, female, black)
    if equation == "ckd-epi-2021":
        return ref_ckd_epi_2021(scr, age, female)
    if equation == "ckd-epi-2021-cys":
        return ref_ckd_epi_2021_cys(scr, cys, age, female)
    if equation == "mdrd-175":
        return ref_mdrd(175, 1.212, scr, age, female, black)
    return ref_mdrd(186, 1.210, scr, age, female, black)


def one(
    equation: str, scr: float, age: float, female: bool, black: bool = False, cys: float = 1.0
) -> float:
    """egfr() for one patient as a float."""
    c = cys if needs_cystatin(equation) else None
    return float(egfr(equation, [scr], [age], [female], cystatin_c_mg_l=c, black=[black])[0])


# --- worked examples, computed by hand from the published formulas ------------------------------

HAND_WORKED = [
    # CKD-EPI 2009, man 45 y, Scr 1.0 mg/dL, not Black (Levey 2009):
    #   Scr/κ = 1.0/0.9 = 1.111111 > 1, so the min term is 1;
    #   1.111111^-1.209 = exp(-1.209 × 0.1053605) = 0.8803983;  0.993^45 = 0.7289810;
    #   141 × 0.8803983 × 0.7289810 = 90.4929
    ("ckd-epi-2009", 1.0, 45, False, False, None, 90.4929),
    # CKD-EPI 2021, woman 60 y, Scr 1.2 mg/dL (Inker 2021):
    #   Scr/κ = 1.2/0.7 = 1.714286;  1.714286^-1.200 = exp(-1.2 × 0.5389965) = 0.5237212;
    #   0.9938^60 = 0.6885564;  142 × 0.5237212 × 0.6885564 × 1.012 = 51.8213
    ("ckd-epi-2021", 1.2, 60, True, False, None, 51.8213),
    # CKD-EPI 2021 creatinine-cystatin C, man 50 y, Scr 1.0 mg/dL, cystatin C 1.5 mg/L:
    #   Scr/κ = 1.111111 -> 1.111111^-0.544 = 0.9442955;  Scys/0.8 = 1.875 ->
    #   1.875^-0.778 = exp(-0.778 × 0.6286087) = 0.6132040;  0.9961^50 = 0.8225210;
    #   135 × 0.9442955 × 0.6132040 × 0.8225210 = 64.2974
    ("ckd-epi-2021-cys", 1.0, 50, False, False, 1.5, 64.2974),
    # MDRD-175, man 60 y, Scr 1.3 mg/dL (Levey 2007):
    #   1.3^-1.154 = exp(-1.154 × 0.2623643) = 0.7387702;  60^-0.203 = exp(-0.203 × 4.0943446)
    #   = 0.4355473;  175 × 0.7387702 × 0.4355473 = 56.3096
    ("mdrd-175", 1.3, 60, False, False, None, 56.3096),
    # MDRD-186, woman 55 y, Scr 150 µmol/L = 150/88.4 = 1.6968326 mg/dL (Levey 2000):
    #   1.6968326^-1.154 = 0.5432461;  55^-0.203 = 0.4433088;
    #   186 × 0.5432461 × 0.4433088 × 0.742 = 33.2368
    ("mdrd-186", 150 / 88.4, 55, True, False, None, 33.2368),
]


@pytest.mark.parametrize(
    ("equation", "scr", "age", "female", "black", "cys", "expected"), HAND_WORKED
)
def test_hand_worked_examples(
    equation: str,
    scr: float,
    age: float,
    female: bool,
    black: bool,
    cys: float | None,
    expected: float,
) -> None:
    r = ref(equation, scr, age, female, black, cys if cys is not None else 1.0)
    assert r == pytest.approx(expected, abs=5e-4)  # the hand working above
    got = one(equation, scr, age, female, black, cys if cys is not None else 1.0)
    assert got == pytest.approx(r, abs=0.01)  # the bar: 0.01 mL/min/1.73 m²
    assert got == pytest.approx(r, rel=1e-12)  # and in fact the same arithmetic


# --- literal published numbers ------------------------------------------------------------------

PUBLISHED = [
    # CRAN package `egfr`, vignette "Getting started with egfr" (printed output, 6-7 digits):
    # egfr_ckdepi_cr_2021(1.0, 50, "female") -> 68.6335
    ("ckd-epi-2021", 1.0, 50, True, False, None, 68.6335),
    # egfr_ckdepi_cr_2021(c(0.8, 1.2, 1.5), c(40, 65, 72), c(F, M, F)) -> 95.46369 67.11141 36.79633
    ("ckd-epi-2021", 0.8, 40, True, False, None, 95.46369),
    ("ckd-epi-2021", 1.2, 65, False, False, None, 67.11141),
    ("ckd-epi-2021", 1.5, 72, True, False, None, 36.79633),
    # egfr_ckdepi_cr_2021(88.4, 50, "female", creatinine_units = "umol/l") -> 68.6335
    ("ckd-epi-2021", 88.4 / UMOL_PER_MGDL, 50, True, False, None, 68.6335),
    # egfr_ckdepi_cr_cys_2021(creatinine = 1.0, cystatin = 1.0, age = 50, "female") -> 74.03625
    ("ckd-epi-2021-cys", 1.0, 50, True, False, 1.0, 74.03625),
    # CRAN package `transplantr`, manual page ckd_epi, example output:
    # ckd_epi(creat = 1.5, age = 64.3, sex = "F", ethnicity = "black", units = "US") -> 42.1421
    ("ckd-epi-2009", 1.5, 64.3, True, True, None, 42.1421),
]


@pytest.mark.parametrize(
    ("equation", "scr", "age", "female", "black", "cys", "expected"), PUBLISHED
)
def test_published_numbers(
    equation: str,
    scr: float,
    age: float,
    female: bool,
    black: bool,
    cys: float | None,
    expected: float,
) -> None:
    got = one(equation, scr, age, female, black, cys if cys is not None else 1.0)
    assert got == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    ("equation", "scr", "age", "female", "cys", "expected"),
    [
        # National Kidney Foundation CKD-EPI 2021 calculator values quoted in the tests of the CRAN
        # package `admiral` (test-compute_kidney.R): 1.09 mg/dL, 55 y, M -> 80;
        # 85 µmol/L, 65 y, F -> 66 (rounded to whole numbers as the calculator shows them).
        ("ckd-epi-2021", 1.09, 55, False, None, 80),
        ("ckd-epi-2021", 85 / UMOL_PER_MGDL, 65, True, None, 66),
        # NKF CKD-EPI 2021 creatinine-cystatin C values quoted in the examples of
        # calculate_egfr_ckdepi_cysc (github JMLuther/tabletools), age 50:
        ("ckd-epi-2021-cys", 1.0, 50, True, 1.5, 54),
        ("ckd-epi-2021-cys", 0.6, 50, True, 0.7, 115),
        ("ckd-epi-2021-cys", 0.6, 50, False, 0.7, 123),
        ("ckd-epi-2021-cys", 0.6, 50, True, 0.8, 111),
        ("ckd-epi-2021-cys", 0.6, 50, False, 0.8, 118),
    ],
)
def test_published_rounded_calculator_values(
    equation: str, scr: float, age: float, female: bool, cys: float | None, expected: int
) -> None:
    got = one(equation, scr, age, female, False, cys if cys is not None else 1.0)
    assert round(got) == expected


# --- full grid against the reference -------------------------------------------------------------

SCR_GRID = [0.3, 0.5, 0.69, 0.7, 0.71, 0.8, 0.89, 0.9, 0.91, 1.0, 1.4, 2.5, 6.0, 15.0]
AGE_GRID = [18, 30, 45.5, 70, 95]
CYS_GRID = [0.5, 0.79, 0.8, 0.81, 1.2, 3.0]


@pytest.mark.parametrize("equation", ALL)
def test_grid_matches_reference(equation: str) -> None:
    cases = list(itertools.product(SCR_GRID, AGE_GRID, [False, True], [False, True], CYS_GRID))
    scr, age, fem, blk, cys = (np.array(col) for col in zip(*cases, strict=True))
    c = cys if needs_cystatin(equation) else None
    got = egfr(equation, scr, age, fem, cystatin_c_mg_l=c, black=blk)
    want = np.array([ref(equation, *case) for case in cases])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.max(np.abs(got - want)) < 0.01


# --- knots, sex, race ----------------------------------------------------------------------------


KNOT_EXPONENTS = {
    # equation: ((α female, α male), β) from the papers
    "ckd-epi-2009": ((-0.329, -0.411), -1.209),
    "ckd-epi-2021": ((-0.241, -0.302), -1.200),
    "ckd-epi-2021-cys": ((-0.219, -0.144), -0.544),
}


@pytest.mark.parametrize("equation", ["ckd-epi-2009", "ckd-epi-2021", "ckd-epi-2021-cys"])
@pytest.mark.parametrize(("female", "kappa"), [(True, 0.7), (False, 0.9)])
def test_ckd_epi_at_the_knot(equation: str, female: bool, kappa: float) -> None:
    """At Scr = κ (and Scys = 0.8) both min/max terms are 1: eGFR = k × base^age × sex factor."""
    age = 40.0
    at_knot = one(equation, kappa, age, female, cys=0.8)
    constant = {"ckd-epi-2009": 141, "ckd-epi-2021": 142, "ckd-epi-2021-cys": 135}[equation]
    base = {"ckd-epi-2009": 0.993, "ckd-epi-2021": 0.9938, "ckd-epi-2021-cys": 0.9961}[equation]
    sex = {"ckd-epi-2009": 1.018, "ckd-epi-2021": 1.012, "ckd-epi-2021-cys": 0.963}[equation]
    assert at_knot == pytest.approx(constant * base**age * (sex if female else 1.0), rel=1e-12)
    # just below κ the α branch applies, just above it the β branch: the relative slope on each
    # side is the exponent of that branch (f(κ(1±ε)) ≈ f(κ)(1 ± exponent·ε))
    (alpha_f, alpha_m), beta = KNOT_EXPONENTS[equation]
    alpha = alpha_f if female else alpha_m
    eps = 1e-7
    below = one(equation, kappa * (1 - eps), age, female, cys=0.8)
    above = one(equation, kappa * (1 + eps), age, female, cys=0.8)
    assert (below / at_knot - 1) / eps == pytest.approx(-alpha, rel=1e-3)
    assert (above / at_knot - 1) / eps == pytest.approx(beta, rel=1e-3)


def test_cystatin_knot() -> None:
    """Scys = 0.8 mg/L exactly: both cystatin terms are 1 (Inker 2021)."""
    at = one("ckd-epi-2021-cys", 0.9, 50, False, cys=0.8)
    assert at == pytest.approx(135 * 0.9961**50, rel=1e-12)


def test_female_vs_male_factors() -> None:
    # MDRD: female/male ratio is exactly the 0.742 coefficient, at any Scr and age
    for eq in ("mdrd-175", "mdrd-186"):
        assert one(eq, 1.7, 63, True) / one(eq, 1.7, 63, False) == pytest.approx(0.742)
    # CKD-EPI 2021: for Scr >= 0.9 both sexes are on the max branch, so
    # female/male = 1.012 × (Scr/0.7)^-1.2 / (Scr/0.9)^-1.2 = 1.012 × (0.7/0.9)^1.2
    for scr in (0.9, 1.3, 4.0):
        ratio = one("ckd-epi-2021", scr, 50, True) / one("ckd-epi-2021", scr, 50, False)
        assert ratio == pytest.approx(1.012 * (0.7 / 0.9) ** 1.2, rel=1e-12)
    # CKD-EPI 2009 at the same creatinine, women get a lower eGFR above both knots
    assert one("ckd-epi-2009", 1.2, 50, True) < one("ckd-epi-2009", 1.2, 50, False)


@pytest.mark.parametrize(
    ("equation", "factor"),
    [
        ("ckd-epi-2009", 1.159),
        ("mdrd-175", 1.212),
        ("mdrd-186", 1.210),
        ("ckd-epi-2021", 1.0),
        ("ckd-epi-2021-cys", 1.0),
    ],
)
def test_race_coefficient_only_when_asked(equation: str, factor: float) -> None:
    plain = one(equation, 1.4, 58, False, cys=1.1)
    assert one(equation, 1.4, 58, False, black=True, cys=1.1) == pytest.approx(plain * factor)
    # default is off
    c = 1.1 if needs_cystatin(equation) else None
    default = float(egfr(equation, 1.4, 58, False, cystatin_c_mg_l=c)[()])
    assert default == plain


def test_errors_and_missing_values() -> None:
    assert list(EQUATIONS) == ALL  # exactly the five equations the CLI offers
    with pytest.raises(ValueError, match="unknown eGFR equation"):
        egfr("cockcroft-gault", 1.0, 50, False)
    with pytest.raises(ValueError, match="needs cystatin C"):
        egfr("ckd-epi-2021-cys", 1.0, 50, False)
    assert needs_cystatin("ckd-epi-2021-cys")
    assert not any(needs_cystatin(e) for e in ALL if e != "ckd-epi-2021-cys")
    out = egfr("ckd-epi-2021", [1.0, np.nan], [50, 50], [False, False])
    assert math.isfinite(out[0]) and math.isnan(out[1])


# --- the SQL text gives the same numbers in DuckDB ------------------------------------------------


@pytest.mark.parametrize("equation", ALL)
def test_sql_matches_numpy(equation: str) -> None:
    cases = list(itertools.product(SCR_GRID, AGE_GRID, [False, True], [False, True], CYS_GRID))
    scr, age, fem, blk, cys = (np.array(col) for col in zip(*cases, strict=True))
    scr_umol = scr * UMOL_PER_MGDL
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t (i INTEGER, scr_umol DOUBLE, age DOUBLE, female BOOLEAN, black BOOLEAN,"
        " cys DOUBLE)"
    )
    con.executemany(
        "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)",
        [
            (i, float(scr_umol[i]), float(age[i]), bool(fem[i]), bool(blk[i]), float(cys[i]))
            for i in range(len(cases))
        ],
    )
    c_sql = "cys" if needs_cystatin(equation) else None
    expr = egfr_sql(equation, "scr_umol", "age", "female", cystatin_c_mg_l=c_sql, black="black")
    rows = con.execute(f"SELECT i, {expr} FROM t ORDER BY i").fetchall()
    got = np.array([r[1] for r in rows])
    c = cys if needs_cystatin(equation) else None
    want = egfr(equation, scr_umol / UMOL_PER_MGDL, age, fem, cystatin_c_mg_l=c, black=blk)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_sql_needs_cystatin() -> None:
    with pytest.raises(ValueError, match="needs cystatin C"):
        egfr_sql("ckd-epi-2021-cys", "c", "a", "f")


# --- properties ---------------------------------------------------------------------------------

scr_st = st.floats(min_value=0.1, max_value=20.0)
age_st = st.floats(min_value=18.0, max_value=110.0)
cys_st = st.floats(min_value=0.3, max_value=8.0)


@settings(max_examples=200, deadline=None)
@given(
    equation=st.sampled_from(ALL),
    scr=scr_st,
    step=st.floats(min_value=1e-6, max_value=5.0),
    age=age_st,
    female=st.booleans(),
    black=st.booleans(),
    cys=cys_st,
)
def test_egfr_strictly_decreasing_in_creatinine(
    equation: str, scr: float, step: float, age: float, female: bool, black: bool, cys: float
) -> None:
    higher = scr * (1 + step)
    assert one(equation, higher, age, female, black, cys) < one(
        equation, scr, age, female, black, cys
    )


@settings(max_examples=200, deadline=None)
@given(
    equation=st.sampled_from(ALL),
    scr=scr_st,
    age=age_st,
    older_by=st.floats(min_value=0.01, max_value=50.0),
    female=st.booleans(),
    cys=cys_st,
)
def test_egfr_decreasing_in_age(
    equation: str, scr: float, age: float, older_by: float, female: bool, cys: float
) -> None:
    assert one(equation, scr, age + older_by, female, cys=cys) < one(
        equation, scr, age, female, cys=cys
    )


@settings(max_examples=100, deadline=None)
@given(scr=scr_st, age=age_st, female=st.booleans(), cys=cys_st, step=st.floats(1e-6, 5.0))
def test_cys_egfr_decreasing_in_cystatin(
    scr: float, age: float, female: bool, cys: float, step: float
) -> None:
    eq = "ckd-epi-2021-cys"
    assert one(eq, scr, age, female, cys=cys * (1 + step)) < one(eq, scr, age, female, cys=cys)
