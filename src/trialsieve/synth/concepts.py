"""The coded concepts the synthetic generator emits, and their units.

Codes: LOINC 2.77 (loinc.org) for laboratory and vital results (each mapped to an analyte in
:mod:`trialsieve.codes`), ICD-10-CM 2025 for conditions, WHO ATC 2024 for drugs, CPT and
ICD-10-PCS for procedures, HL7 v3 ActCode for encounter classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from trialsieve.codes import ATC, CPT, ICD10CM, ICD10PCS, LOINC, analyte_for_code
from trialsieve.kidney.creatinine import UMOL_PER_MGDL
from trialsieve.units import canonical_unit

ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Concept:
    """One code the generator can emit, with the store columns it fixes."""

    name: str
    kind: str  # store kind
    resource: str  # FHIR resource type (also the prefix of ``source``)
    system: str
    code: str
    display: str
    analyte: str | None = None
    route: str | None = None
    dose_unit: str | None = None


#: analyte -> LOINC code (every one maps back to the analyte in trialsieve.codes)
LOINC_OF: dict[str, str] = {
    "creatinine": "2160-0", "cystatin_c": "33863-2", "uacr": "9318-7",
    "urine_protein_24h": "2889-4", "hba1c": "4548-4", "hemoglobin": "718-7",
    "platelets": "777-3", "wbc": "6690-2", "neutrophils": "751-8", "ast": "1920-8",
    "alt": "1742-6", "bilirubin_total": "1975-2", "potassium": "2823-3",
    "cholesterol_total": "2093-3", "ldl": "18262-6", "hdl": "2085-9", "triglycerides": "2571-8",
    "sbp": "8480-6", "dbp": "8462-4", "weight": "29463-7", "urine_volume": "9187-6",
    "lvef": "10230-1", "afp": "1834-1", "cea": "2039-6", "ca19_9": "24108-3",
    "ca125": "10334-1", "hbv_dna": "42595-9", "hcv_rna": "11011-4",
}  # fmt: skip
VITALS = frozenset({"sbp", "dbp", "weight", "lvef"})
BP_PANEL = ("85354-9", "Blood pressure panel with all children optional")

_LAB_DISPLAY: dict[str, str] = {
    "creatinine": "Creatinine [Mass/volume] in Serum or Plasma",
    "cystatin_c": "Cystatin C [Mass/volume] in Serum or Plasma",
    "uacr": "Albumin/Creatinine [Mass Ratio] in Urine",
    "urine_protein_24h": "Protein [Mass/time] in 24 hour Urine",
    "hba1c": "Hemoglobin A1c/Hemoglobin.total in Blood",
    "hemoglobin": "Hemoglobin [Mass/volume] in Blood",
    "platelets": "Platelets [#/volume] in Blood", "wbc": "Leukocytes [#/volume] in Blood",
    "neutrophils": "Neutrophils [#/volume] in Blood",
    "ast": "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
    "alt": "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
    "bilirubin_total": "Bilirubin.total [Mass/volume] in Serum or Plasma",
    "potassium": "Potassium [Moles/volume] in Serum or Plasma",
    "cholesterol_total": "Cholesterol [Mass/volume] in Serum or Plasma",
    "ldl": "Cholesterol in LDL [Mass/volume] in Serum or Plasma",
    "hdl": "Cholesterol in HDL [Mass/volume] in Serum or Plasma",
    "triglycerides": "Triglyceride [Mass/volume] in Serum or Plasma",
    "sbp": "Systolic blood pressure", "dbp": "Diastolic blood pressure",
    "weight": "Body weight", "urine_volume": "Urine output",
    "lvef": "Left ventricular Ejection fraction", "afp": "Alpha-1-Fetoprotein",
    "cea": "Carcinoembryonic Ag", "ca19_9": "Cancer Ag 19-9", "ca125": "Cancer Ag 125",
    "hbv_dna": "Hepatitis B virus DNA [#/volume] (viral load)",
    "hcv_rna": "Hepatitis C virus RNA [#/volume] (viral load)",
}  # fmt: skip

#: drugs: name -> (ATC, display, route, dose unit)
DRUGS: dict[str, tuple[str, str, str, str]] = {
    "metformin": ("A10BA02", "metformin", "oral", "mg"),
    "insulin": ("A10AE04", "insulin glargine", "subcutaneous", "[iU]"),
    "dapagliflozin": ("A10BK01", "dapagliflozin", "oral", "mg"),
    "empagliflozin": ("A10BK03", "empagliflozin", "oral", "mg"),
    "ramipril": ("C09AA05", "ramipril", "oral", "mg"),
    "losartan": ("C09CA01", "losartan", "oral", "mg"),
    "atorvastatin": ("C10AA05", "atorvastatin", "oral", "mg"),
    "prednisone": ("H02AB07", "prednisone", "oral", "mg"),
    "prednisolone": ("H02AB06", "prednisolone", "oral", "mg"),
    "methylprednisolone": ("H02AB04", "methylprednisolone", "intravenous", "mg"),
    "tacrolimus": ("L04AD02", "tacrolimus", "oral", "mg"),
    "ciclosporin": ("L04AD01", "ciclosporin", "oral", "mg"),
    "mycophenolate": ("L04AA06", "mycophenolic acid", "oral", "mg"),
    "methotrexate": ("L04AX03", "methotrexate", "oral", "mg"),
    "ceftriaxone": ("J01DD04", "ceftriaxone", "intravenous", "g"),
    "norepinephrine": ("C01CA03", "norepinephrine", "intravenous", "ug/kg/min"),
}

#: procedures: name -> (system, code, display)
PROCEDURES: dict[str, tuple[str, str, str]] = {
    "hemodialysis": (CPT, "90935", "Hemodialysis procedure with single evaluation"),
    "hemodialysis_pcs": (ICD10PCS, "5A1D70Z", "Performance of urinary filtration, intermittent"),
    "ventilation": (ICD10PCS, "5A1955Z", "Respiratory ventilation, greater than 96 hours"),
    "transfusion": (ICD10PCS, "30233N1", "Transfusion of nonautologous red blood cells"),
    "kidney_biopsy": (CPT, "50200", "Renal biopsy; percutaneous, by trocar or needle"),
}

#: conditions emitted outside the generic table of rates.py (kidney, metabolic, admissions)
EXTRA_CONDITIONS: dict[str, str] = {
    "E11.9": "Type 2 diabetes mellitus without complications",
    "E11.21": "Type 2 diabetes mellitus with diabetic nephropathy",
    "E11.22": "Type 2 diabetes mellitus with diabetic chronic kidney disease",
    "E11.65": "Type 2 diabetes mellitus with hyperglycemia",
    "E10.9": "Type 1 diabetes mellitus without complications",
    "E10.22": "Type 1 diabetes mellitus with diabetic chronic kidney disease",
    "I10": "Essential (primary) hypertension",
    "I12.9": "Hypertensive chronic kidney disease with stage 1-4 CKD",
    "I12.0": "Hypertensive chronic kidney disease with stage 5 CKD or ESRD",
    "N18.1": "Chronic kidney disease, stage 1", "N18.2": "Chronic kidney disease, stage 2",
    "N18.31": "Chronic kidney disease, stage 3a", "N18.32": "Chronic kidney disease, stage 3b",
    "N18.4": "Chronic kidney disease, stage 4", "N18.5": "Chronic kidney disease, stage 5",
    "N18.6": "End stage renal disease", "Z99.2": "Dependence on renal dialysis",
    "N17.9": "Acute kidney failure, unspecified", "N13.9": "Obstructive and reflux uropathy",
    "J18.9": "Pneumonia, unspecified organism", "N39.0": "Urinary tract infection",
    "A41.9": "Sepsis, unspecified organism", "R65.21": "Severe sepsis with septic shock",
    "I21.4": "Non-ST elevation myocardial infarction", "K92.2": "Gastrointestinal hemorrhage",
    "S72.001A": "Fracture of unspecified part of neck of right femur",
    "K80.20": "Calculus of gallbladder without obstruction", "R55": "Syncope and collapse",
    "E87.5": "Hyperkalemia",
}  # fmt: skip

ENCOUNTERS: dict[str, tuple[str, str]] = {
    "admission": ("IMP", "Inpatient admission"),
    "icu": ("ACUTE", "Intensive care unit stay"),
}


def _build() -> list[Concept]:
    out: list[Concept] = []
    for analyte, code in LOINC_OF.items():
        assert analyte_for_code(LOINC, code) == analyte, (analyte, code)
        kind = "output" if analyte == "urine_volume" else "vital" if analyte in VITALS else "lab"
        out.append(Concept(f"lab:{analyte}", kind, "Observation", LOINC, code,
                           _LAB_DISPLAY[analyte], analyte))  # fmt: skip
    from trialsieve.synth.rates import CONDITIONS

    cond: dict[str, str] = dict(EXTRA_CONDITIONS)
    for c in CONDITIONS:
        for code, display, _ in c.codes:
            cond[code] = display
    for code, display in cond.items():
        out.append(Concept(f"cond:{code}", "condition", "Condition", ICD10CM, code, display))
    for name, (atc, display, route, dose_unit) in DRUGS.items():
        out.append(Concept(f"med:{name}", "medication", "MedicationRequest", ATC, atc, display,
                           route=route, dose_unit=dose_unit))  # fmt: skip
    for name, (system, code, display) in PROCEDURES.items():
        out.append(Concept(f"proc:{name}", "procedure", "Procedure", system, code, display))
    for name, (code, display) in ENCOUNTERS.items():
        out.append(Concept(f"enc:{name}", "encounter", "Encounter", ACTCODE, code, display))
    return out


CONCEPTS: tuple[Concept, ...] = tuple(_build())
INDEX: dict[str, int] = {c.name: i for i, c in enumerate(CONCEPTS)}


def ci(name: str) -> int:
    """Index of the concept called ``name`` (``lab:creatinine``, ``cond:N17.9``, ``med:...``)."""
    return INDEX[name]


# --- units: how each analyte is reported -------------------------------------------------------
@dataclass(frozen=True)
class UnitVariant:
    """A reporting unit: its UCUM code, canonical -> reported conversion, decimals reported."""

    unit: str
    to_orig: Callable[[FloatArray], FloatArray]
    decimals: int


def _lin(f: float) -> Callable[[FloatArray], FloatArray]:
    return lambda x: x * f


_ID = _lin(1.0)

#: analyte -> (SI variant, conventional variant); the generator reports every result of a
#: patient in one of the two (trialsieve.synth.rates.CONVENTIONAL_UNITS)
UNIT_VARIANTS: dict[str, tuple[UnitVariant, UnitVariant]] = {
    "creatinine": (UnitVariant("umol/L", _ID, 0), UnitVariant("mg/dL", _lin(1 / UMOL_PER_MGDL), 2)),
    "cystatin_c": (UnitVariant("mg/L", _ID, 2),) * 2,
    "uacr": (UnitVariant("mg/mmol", _lin(10.0 / UMOL_PER_MGDL), 1), UnitVariant("mg/g", _ID, 0)),
    "urine_protein_24h": (UnitVariant("g/(24.h)", _ID, 2), UnitVariant("mg/24h", _lin(1000.0), 0)),
    "hba1c": (UnitVariant("mmol/mol", lambda x: (x - 2.152) / 0.09148, 0),
              UnitVariant("%", _ID, 1)),
    "hemoglobin": (UnitVariant("g/L", _ID, 0), UnitVariant("g/dL", _lin(0.1), 1)),
    "platelets": (UnitVariant("10*9/L", _ID, 0), UnitVariant("10*3/uL", _ID, 0)),
    "wbc": (UnitVariant("10*9/L", _ID, 1), UnitVariant("10*3/uL", _ID, 1)),
    "neutrophils": (UnitVariant("10*9/L", _ID, 2), UnitVariant("10*3/uL", _ID, 2)),
    "ast": (UnitVariant("U/L", _ID, 0),) * 2,
    "alt": (UnitVariant("U/L", _ID, 0),) * 2,
    "bilirubin_total": (UnitVariant("umol/L", _ID, 0), UnitVariant("mg/dL", _lin(1 / 17.1), 1)),
    "potassium": (UnitVariant("mmol/L", _ID, 1),) * 2,
    "cholesterol_total": (UnitVariant("mmol/L", _ID, 2), UnitVariant("mg/dL", _lin(38.67), 0)),
    "ldl": (UnitVariant("mmol/L", _ID, 2), UnitVariant("mg/dL", _lin(38.67), 0)),
    "hdl": (UnitVariant("mmol/L", _ID, 2), UnitVariant("mg/dL", _lin(38.67), 0)),
    "triglycerides": (UnitVariant("mmol/L", _ID, 2), UnitVariant("mg/dL", _lin(88.57), 0)),
    "sbp": (UnitVariant("mm[Hg]", _ID, 0),) * 2,
    "dbp": (UnitVariant("mm[Hg]", _ID, 0),) * 2,
    "weight": (UnitVariant("kg", _ID, 1),) * 2,
    "urine_volume": (UnitVariant("mL", _ID, 0),) * 2,
    "lvef": (UnitVariant("%", _ID, 0),) * 2,
    "afp": (UnitVariant("ng/mL", _ID, 1),) * 2,
    "cea": (UnitVariant("ng/mL", _ID, 1),) * 2,
    "ca19_9": (UnitVariant("U/mL", _ID, 1),) * 2,
    "ca125": (UnitVariant("U/mL", _ID, 1),) * 2,
    "hbv_dna": (UnitVariant("IU/mL", _ID, 0),) * 2,
    "hcv_rna": (UnitVariant("IU/mL", _ID, 0),) * 2,
}  # fmt: skip

#: reference ranges attached to results, canonical units (None = open end)
REFERENCE: dict[str, tuple[float | None, float | None]] = {
    "creatinine": (45.0, 110.0), "hemoglobin": (120.0, 170.0), "platelets": (150.0, 400.0),
    "wbc": (4.0, 11.0), "neutrophils": (1.5, 7.5), "ast": (None, 40.0), "alt": (None, 40.0),
    "bilirubin_total": (None, 21.0), "potassium": (3.5, 5.0), "hbv_dna": (None, 20.0),
    "hcv_rna": (None, 15.0), "afp": (None, 10.0), "cea": (None, 5.0), "ca19_9": (None, 37.0),
    "ca125": (None, 35.0),
}  # fmt: skip


def reference_in(analyte: str, variant: UnitVariant) -> tuple[float | None, float | None]:
    """The reference range of ``analyte`` as reported in ``variant`` (rounded like results)."""
    lo, hi = REFERENCE.get(analyte, (None, None))

    def conv(v: float | None) -> float | None:
        if v is None:
            return None
        return float(np.round(variant.to_orig(np.array([v]))[0], variant.decimals))

    return conv(lo), conv(hi)


for _a in UNIT_VARIANTS:
    assert canonical_unit(_a)  # every analyte is in the unit table
