"""Code systems and the code -> analyte table.

System URIs follow HL7 FHIR terminology (https://terminology.hl7.org/external_terminologies.html);
the alias table is the one of ``docs/STORE.md``. LOINC codes come from LOINC 2.77 (loinc.org);
MIMIC item ids from the MIMIC-III/IV ``D_LABITEMS`` / ``D_ITEMS`` tables (PhysioNet); OMOP concept
ids from the OHDSI standard vocabulary (Athena), standard LOINC measurement concepts.
"""

from __future__ import annotations

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD9CM = "http://hl7.org/fhir/sid/icd-9-cm"
ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
ICD9PROC = "http://hl7.org/fhir/sid/icd-9-cm/procedure"
ATC = "http://www.whocc.no/atc"
NDC = "http://hl7.org/fhir/sid/ndc"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CPT = "http://www.ama-assn.org/go/cpt"
OMOP = "https://athena.ohdsi.org/concept"
MIMIC3_ITEM = "https://mimic.mit.edu/mimic3/itemid"
MIMIC4_ITEM = "https://mimic.mit.edu/mimic4/itemid"

#: alias (as written in protocols / CSV) -> canonical URI
SYSTEM_ALIASES: dict[str, str] = {
    "loinc": LOINC,
    "snomed": SNOMED,
    "snomedct": SNOMED,
    "sct": SNOMED,
    "icd10cm": ICD10CM,
    "icd10": ICD10CM,
    "icd9cm": ICD9CM,
    "icd9": ICD9CM,
    "icd10pcs": ICD10PCS,
    "icd9proc": ICD9PROC,
    "atc": ATC,
    "ndc": NDC,
    "rxnorm": RXNORM,
    "cpt": CPT,
    "omop": OMOP,
    "mimic3-item": MIMIC3_ITEM,
    "mimic4-item": MIMIC4_ITEM,
}

#: other spellings (URIs, OIDs) of the same systems
_OTHER_SPELLINGS: dict[str, str] = {
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "http://snomed.info/sct/": SNOMED,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "http://hl7.org/fhir/sid/icd-10": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.103": ICD9CM,
    "http://hl7.org/fhir/sid/icd-9": ICD9CM,
    "urn:oid:2.16.840.1.113883.6.4": ICD10PCS,
    "urn:oid:2.16.840.1.113883.6.104": ICD9PROC,
    "urn:oid:2.16.840.1.113883.6.73": ATC,
    "http://www.whocc.no/atc/": ATC,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "urn:oid:2.16.840.1.113883.6.12": CPT,
}

_BY_LOWER: dict[str, str] = {
    **{k.lower(): v for k, v in _OTHER_SPELLINGS.items()},
    **{v.lower(): v for v in SYSTEM_ALIASES.values()},
    **SYSTEM_ALIASES,
    **{k.replace("-", "").replace("_", ""): v for k, v in SYSTEM_ALIASES.items()},
}


def canonical_system(system: str) -> str:
    """Alias, URI or OID spelling -> canonical URI; an unknown system is returned stripped as is."""
    s = system.strip()
    key = s.lower()
    if key in _BY_LOWER:
        return _BY_LOWER[key]
    compact = key.replace("-", "").replace("_", "").replace(" ", "")
    return _BY_LOWER.get(compact, s)


_LOINC: dict[str, str] = {
    # creatinine in serum/plasma/blood (mass and substance concentration)
    "2160-0": "creatinine", "38483-4": "creatinine", "14682-9": "creatinine",
    "59826-8": "creatinine", "77140-2": "creatinine",
    "33863-2": "cystatin_c",
    "33914-3": "egfr_reported", "48642-3": "egfr_reported", "48643-1": "egfr_reported",
    "62238-1": "egfr_reported", "98979-8": "egfr_reported", "69405-9": "egfr_reported",
    "9318-7": "uacr", "14959-1": "uacr", "14958-3": "uacr", "32294-1": "uacr", "30000-4": "uacr",
    "2889-4": "urine_protein_24h", "21482-3": "urine_protein_24h",
    "4548-4": "hba1c", "17856-6": "hba1c", "41995-2": "hba1c", "59261-8": "hba1c",
    "718-7": "hemoglobin", "20509-6": "hemoglobin", "59260-0": "hemoglobin",
    "777-3": "platelets", "26515-7": "platelets",
    "6690-2": "wbc", "26464-8": "wbc",
    "751-8": "neutrophils", "26499-4": "neutrophils",
    "1920-8": "ast", "30239-8": "ast",
    "1742-6": "alt", "1743-4": "alt", "76625-3": "alt",
    "1975-2": "bilirubin_total", "14631-6": "bilirubin_total", "42719-5": "bilirubin_total",
    "2823-3": "potassium", "6298-4": "potassium", "77142-8": "potassium",
    "2093-3": "cholesterol_total", "14647-2": "cholesterol_total",
    "2571-8": "triglycerides", "14927-8": "triglycerides",
    "18262-6": "ldl", "2089-1": "ldl", "13457-7": "ldl", "22748-8": "ldl",
    "2085-9": "hdl", "14646-4": "hdl",
    "8480-6": "sbp", "8462-4": "dbp",
    "29463-7": "weight", "3141-9": "weight",
    "9187-6": "urine_volume", "3167-4": "urine_volume", "9192-6": "urine_volume",
    "10230-1": "lvef", "8806-2": "lvef", "18043-0": "lvef",
    "1834-1": "afp", "2039-6": "cea", "24108-3": "ca19_9", "10334-1": "ca125",
    "42595-9": "hbv_dna", "29615-2": "hbv_dna", "11011-4": "hcv_rna", "38180-6": "hcv_rna",
    "21198-7": "hcg", "2119-6": "hcg", "19080-1": "hcg",
}  # fmt: skip

# MIMIC-III/IV lab items (D_LABITEMS; same ids in both) and charted items (D_ITEMS)
_MIMIC_LAB: dict[str, str] = {
    "50912": "creatinine", "52546": "creatinine",
    "50852": "hba1c", "51222": "hemoglobin", "50811": "hemoglobin", "51265": "platelets",
    "51301": "wbc", "51300": "wbc", "51755": "wbc",
    "52075": "neutrophils", "50878": "ast", "50861": "alt", "50885": "bilirubin_total",
    "50971": "potassium", "50822": "potassium", "50907": "cholesterol_total",
    "51000": "triglycerides", "50905": "ldl", "50906": "ldl", "50904": "hdl",
    "51070": "uacr",
}  # fmt: skip
_MIMIC3_CHART: dict[str, str] = {
    # CareVue (1-8000) and MetaVision (22xxxx) chart items
    "51": "sbp", "442": "sbp", "455": "sbp", "6701": "sbp", "220179": "sbp", "220050": "sbp",
    "8368": "dbp", "8440": "dbp", "8441": "dbp", "8555": "dbp", "220180": "dbp", "220051": "dbp",
    # weights (mimic-code weight_durations items): kg except 3581/226531 (lb), 3582 (oz)
    "762": "weight", "763": "weight", "3580": "weight", "3581": "weight", "3582": "weight",
    "3693": "weight", "224639": "weight", "226512": "weight", "226531": "weight",
    # urine output (OUTPUTEVENTS), the mimic-code urine_output item list, checked against
    # D_ITEMS of the MIMIC-III demo. 227488 "GU Irrigant Volume In" is an input, not urine: it
    # is not mapped; the MIMIC reader nets it out of the urine charted with it (docs/STORE.md).
    "40055": "urine_volume", "43175": "urine_volume", "40069": "urine_volume",
    "40094": "urine_volume", "40715": "urine_volume", "40473": "urine_volume",
    "40085": "urine_volume", "40057": "urine_volume", "40056": "urine_volume",
    "40405": "urine_volume", "40428": "urine_volume", "40086": "urine_volume",
    "40096": "urine_volume", "40651": "urine_volume", "226559": "urine_volume",
    "226560": "urine_volume", "226561": "urine_volume", "226584": "urine_volume",
    "226563": "urine_volume", "226564": "urine_volume", "226565": "urine_volume",
    "226567": "urine_volume", "226557": "urine_volume", "226558": "urine_volume",
    "227489": "urine_volume",
}  # fmt: skip
_MIMIC4_CHART: dict[str, str] = {
    k: v
    for k, v in _MIMIC3_CHART.items()
    if len(k) == 6  # MIMIC-IV keeps MetaVision ids only
}

# OMOP standard measurement concepts (LOINC-based). The OMOP reader maps through the CONCEPT
# table to LOINC first; this table serves sources without a CONCEPT table.
_OMOP: dict[str, str] = {
    "3016723": "creatinine", "3051825": "creatinine", "3020564": "creatinine",
    "3004249": "sbp", "3012888": "dbp", "3025315": "weight", "3000963": "hemoglobin",
    "3024929": "platelets", "3000905": "wbc", "3004410": "hba1c", "3013721": "ast",
    "3006923": "alt", "3024128": "bilirubin_total", "3023103": "potassium",
    "3027114": "cholesterol_total", "3022192": "triglycerides", "3028437": "ldl",
    "3007070": "hdl", "3049187": "egfr_reported", "3034485": "uacr",
    # checked against the CONCEPT table of OHDSI Eunomia Synthea27Nj (vocabulary LOINC)
    "3005456": "potassium", "3009966": "ldl", "3001802": "uacr", "3027172": "lvef",
}  # fmt: skip

_BY_SYSTEM: dict[str, dict[str, str]] = {
    LOINC: _LOINC,
    MIMIC3_ITEM: {**_MIMIC_LAB, **_MIMIC3_CHART},
    MIMIC4_ITEM: {**_MIMIC_LAB, **_MIMIC4_CHART},
    OMOP: _OMOP,
}


def analyte_for_code(system: str, code: str) -> str | None:
    """The analyte (``trialsieve.units.ANALYTES`` key) of a LOINC / MIMIC itemid / OMOP concept."""
    table = _BY_SYSTEM.get(canonical_system(system))
    if table is None:
        return None
    return table.get(code.strip())


def code_table(system: str) -> dict[str, str]:
    """A copy of the code -> analyte table of ``system`` (empty for systems without one)."""
    return dict(_BY_SYSTEM.get(canonical_system(system), {}))
