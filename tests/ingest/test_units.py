"""The unit table: factors (against independent published values), spellings, plausibility."""

from __future__ import annotations

import math

import pytest

from trialsieve.units import (
    ANALYTES,
    PlausibilityError,
    UnitError,
    canonical_unit,
    check_plausible,
    default_lln,
    default_uln,
    to_canonical,
)

ISSUE_ANALYTES = {
    "creatinine", "uacr", "urine_protein_24h", "hba1c", "hemoglobin", "platelets", "wbc",
    "neutrophils", "ast", "alt", "bilirubin_total", "potassium", "cholesterol_total", "ldl",
    "hdl", "triglycerides", "sbp", "dbp", "weight", "urine_volume", "lvef", "afp", "cea",
    "ca19_9", "ca125", "cystatin_c",
}  # fmt: skip


def test_every_analyte_of_the_issue_is_in_the_table() -> None:
    assert ISSUE_ANALYTES <= set(ANALYTES)


@pytest.mark.parametrize("name", sorted(ANALYTES))
def test_canonical_unit_converts_with_factor_one(name: str) -> None:
    assert to_canonical(name, 12.5, canonical_unit(name)) == pytest.approx(12.5)


def test_creatinine_mg_dl_uses_kidney_constant() -> None:
    creat = pytest.importorskip("trialsieve.kidney.creatinine")
    assert to_canonical("creatinine", 1.0, "mg/dL") == pytest.approx(creat.UMOL_PER_MGDL)
    # molar mass 113.12 g/mol: 1 mg/dL = 10 mg/L / 113.12 g/mol = 88.4 umol/L
    assert to_canonical("creatinine", 1.0, "mg/dL") == pytest.approx(10_000 / 113.12, rel=1e-3)
    assert to_canonical("creatinine", 0.1, "mmol/L") == pytest.approx(100.0)
    assert to_canonical("creatinine", 95, "\u00b5mol/L") == pytest.approx(95.0)


def test_uacr_mg_per_mmol_to_mg_per_g() -> None:
    pytest.importorskip("trialsieve.kidney.creatinine")
    # KDIGO: 3 mg/mmol corresponds to 30 mg/g (A1/A2 boundary)
    assert to_canonical("uacr", 3.0, "mg/mmol") == pytest.approx(26.5, rel=0.01)
    assert to_canonical("uacr", 30.0, "mg/g") == 30.0


@pytest.mark.parametrize(
    ("analyte", "value", "unit", "expected"),
    [
        ("hba1c", 53.0, "mmol/mol", 7.0),  # IFCC 53 mmol/mol ~ NGSP 7.0 % (NGSP table)
        ("hba1c", 48.0, "mmol/mol", 6.5),  # diagnostic threshold (ADA / WHO)
        ("hemoglobin", 13.5, "g/dL", 135.0),
        ("platelets", 250.0, "10*3/uL", 250.0),
        ("platelets", 250.0, "K/uL", 250.0),
        ("platelets", 250_000.0, "/uL", 250.0),
        ("wbc", 7.2, "10^9/L", 7.2),
        ("bilirubin_total", 1.0, "mg/dL", 17.1),
        ("cholesterol_total", 200.0, "mg/dL", 5.17),
        ("triglycerides", 150.0, "mg/dL", 1.69),
        ("ast", 1.0, "ukat/L", 60.0),
        ("potassium", 4.1, "mEq/L", 4.1),
        ("sbp", 16.0, "kPa", 120.0),
        ("weight", 154.0, "[lb_av]", 69.85),
        ("urine_volume", 0.25, "L", 250.0),
        ("urine_protein_24h", 450.0, "mg/24h", 0.45),
        ("cystatin_c", 0.1, "mg/dL", 1.0),
        ("egfr_reported", 45.0, "mL/min/{1.73_m2}", 45.0),
    ],
)
def test_known_conversions(analyte: str, value: float, unit: str, expected: float) -> None:
    assert to_canonical(analyte, value, unit) == pytest.approx(expected, rel=0.01)


def test_unknown_unit_names_analyte_and_unit() -> None:
    with pytest.raises(UnitError, match=r"creatinine.*mg/furlong"):
        to_canonical("creatinine", 1.0, "mg/furlong")
    with pytest.raises(UnitError, match="missing unit"):
        to_canonical("potassium", 4.0, None)
    with pytest.raises(UnitError, match="unknown analyte"):
        to_canonical("unobtainium", 4.0, "mg")


def test_plausibility_rejects_never_clips() -> None:
    with pytest.raises(PlausibilityError, match=r"creatinine.*-80.*5\.\.3000"):
        check_plausible("creatinine", -80.0)
    with pytest.raises(PlausibilityError):
        check_plausible("potassium", 25.0)
    with pytest.raises(PlausibilityError):
        check_plausible("sbp", math.nan)
    check_plausible("creatinine", 880.0)  # severe AKI: plausible


def test_default_limits() -> None:
    assert default_uln("ast") == 40.0
    assert default_lln("platelets") == 150.0
    assert default_uln("hba1c") is None
