"""Back-calculated baseline creatinine (KDIGO 2012 §2.4 / ADQI 2004; NCT06954740 protocol).

The rule: solve MDRD-175 (Levey AS et al. Clin Chem 2007;53:766-772)
    eGFR = 175 × Scr^-1.154 × age^-0.203 × 0.742 [female]
for Scr at an assumed eGFR of 75 mL/min/1.73 m², i.e.
    Scr [mg/dL] = (75 / (175 × age^-0.203 × 0.742 [female])) ^ (1 / -1.154).
Reference values here are computed with plain :mod:`math` from that formula.
"""

from __future__ import annotations

import itertools
import math

import duckdb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trialsieve.kidney.baseline import (
    ASSUMED_EGFR,
    backcalc_creatinine_mg_dl,
    backcalc_creatinine_sql,
    backcalc_creatinine_umol_l,
)
from trialsieve.kidney.egfr import egfr, egfr_sql


def ref_backcalc_mg_dl(age: float, female: bool, assumed: float = 75.0) -> float:
    return (assumed / (175 * age**-0.203 * (0.742 if female else 1.0))) ** (1 / -1.154)


def test_assumed_egfr_is_75() -> None:
    assert ASSUMED_EGFR == 75.0


@pytest.mark.parametrize(
    ("age", "female", "mg_dl", "umol_l"),
    [
        # man, 50 y:  50^-0.203 = exp(-0.203 × 3.9120230) = 0.4519694;
        #   175 × 0.4519694 = 79.0947;  75 / 79.0947 = 0.9482309;
        #   0.9482309^(1/-1.154) = exp(-0.0531572 / -1.154) = 1.0471408 mg/dL
        #   × 88.4 = 92.5672 µmol/L
        (50, False, 1.0471408, 92.56725),
        # woman, 70 y:  70^-0.203 = 0.4221289;  175 × 0.4221289 × 0.742 = 54.8134;
        #   75 / 54.8134 = 1.3682776;  1.3682776^(1/-1.154) = exp(0.3135527 / -1.154)
        #   = 0.7620756 mg/dL  × 88.4 = 67.3675 µmol/L
        (70, True, 0.7620756, 67.36749),
    ],
)
def test_hand_worked_examples(age: float, female: bool, mg_dl: float, umol_l: float) -> None:
    assert ref_backcalc_mg_dl(age, female) == pytest.approx(mg_dl, abs=1e-6)
    assert float(backcalc_creatinine_mg_dl(age, female)) == pytest.approx(mg_dl, abs=1e-6)
    assert float(backcalc_creatinine_umol_l(age, female)) == pytest.approx(umol_l, abs=1e-4)


AGES = [18, 25, 40.5, 60, 75, 90, 104]


def test_grid_matches_reference_and_units() -> None:
    cases = list(itertools.product(AGES, [False, True]))
    age = np.array([c[0] for c in cases], dtype=float)
    fem = np.array([c[1] for c in cases])
    mg = backcalc_creatinine_mg_dl(age, fem)
    np.testing.assert_allclose(mg, [ref_backcalc_mg_dl(a, f) for a, f in cases], rtol=1e-12)
    np.testing.assert_allclose(backcalc_creatinine_umol_l(age, fem), mg * 88.4, rtol=1e-15)


def test_round_trip_gives_the_assumed_egfr() -> None:
    """MDRD-175 of the back-calculated creatinine is exactly the assumed eGFR."""
    cases = list(itertools.product(AGES, [False, True]))
    age = np.array([c[0] for c in cases], dtype=float)
    fem = np.array([c[1] for c in cases])
    for assumed in (75.0, 60.0, 90.0):
        scr = backcalc_creatinine_mg_dl(age, fem, assumed_egfr=assumed)
        np.testing.assert_allclose(egfr("mdrd-175", scr, age, fem), assumed, rtol=1e-12)


def test_sex_and_age_shape() -> None:
    """Women and older people get a lower assumed baseline (the same eGFR needs less Scr)."""
    ages = np.array(AGES, dtype=float)
    men = backcalc_creatinine_mg_dl(ages, False)
    women = backcalc_creatinine_mg_dl(ages, True)
    # female/male ratio is 0.742^(1/1.154) at every age
    np.testing.assert_allclose(women / men, 0.742 ** (1 / 1.154), rtol=1e-12)
    assert np.all(np.diff(men) < 0) and np.all(np.diff(women) < 0)


def test_sql_matches_numpy_and_round_trips_in_duckdb() -> None:
    cases = list(itertools.product(AGES, [False, True]))
    con = duckdb.connect()
    con.execute("CREATE TABLE p (i INTEGER, age DOUBLE, female BOOLEAN)")
    con.executemany(
        "INSERT INTO p VALUES (?, ?, ?)", [(i, float(a), f) for i, (a, f) in enumerate(cases)]
    )
    base = backcalc_creatinine_sql("age", "female")
    back = egfr_sql("mdrd-175", base, "age", "female")
    rows = con.execute(f"SELECT i, {base}, {back} FROM p ORDER BY i").fetchall()
    age = np.array([c[0] for c in cases], dtype=float)
    fem = np.array([c[1] for c in cases])
    np.testing.assert_allclose(
        [r[1] for r in rows], backcalc_creatinine_umol_l(age, fem), rtol=1e-12
    )
    np.testing.assert_allclose([r[2] for r in rows], 75.0, rtol=1e-12)
    other = backcalc_creatinine_sql("age", "female", assumed_egfr=60.0)
    got = con.execute(f"SELECT {other} FROM p ORDER BY i").fetchall()
    np.testing.assert_allclose(
        [r[0] for r in got], backcalc_creatinine_umol_l(age, fem, assumed_egfr=60.0), rtol=1e-12
    )


@settings(max_examples=200, deadline=None)
@given(
    age=st.floats(min_value=18.0, max_value=110.0),
    female=st.booleans(),
    assumed=st.floats(min_value=5.0, max_value=150.0),
)
def test_round_trip_property(age: float, female: bool, assumed: float) -> None:
    scr = backcalc_creatinine_mg_dl(age, female, assumed_egfr=assumed)
    back = float(egfr("mdrd-175", scr, age, female)[()])
    assert back == pytest.approx(assumed, rel=1e-12)
    assert float(scr) == pytest.approx(ref_backcalc_mg_dl(age, female, assumed), rel=1e-12)
    assert math.isfinite(float(scr)) and float(scr) > 0
