"""Rates used by the synthetic population generator, each with its source.

Every number the generator draws a patient's history from is here, so a reviewer can check it in
one place. ``Rate.judgement`` is True where no single published figure fits the generator's
population (a hospital network's patients, older and sicker than the general population) and the
number is an engineering judgement, usually bracketed by the cited literature.

Prevalences are "at age 50"; ``rr_decade`` multiplies the odds-free probability per decade of age
away from 50 (capped at 0.95), a simple way to make chronic disease more common in older patients.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """A probability (or a mean rate) with its source."""

    value: float
    source: str
    judgement: bool = False


@dataclass(frozen=True)
class ConditionRate:
    """A chronic or past condition drawn independently for each patient.

    ``codes`` are ICD-10-CM (code, display) with relative weights; ``onset_years`` is how far
    before the screening instant the onset may lie (uniform); ``female_only``/``max_age``
    restrict who can have it (pregnancy).
    """

    name: str
    codes: tuple[tuple[str, str, float], ...]
    prevalence: Rate
    rr_decade: float = 1.0
    onset_years: float = 10.0
    female_only: bool = False
    max_age: float = 120.0
    resolved: float = 0.0  # probability that the condition carries an abatement (resolved)


# --- demography -------------------------------------------------------------------------------
FEMALE = Rate(0.51, "UN World Population Prospects 2022: ~50-51 % of adults are women")
AGE_BETA = (2.0, 1.8)  # age = 18 + 77 * Beta(a, b): mean ~58 y, hospital patients skew older
AGE_SOURCE = Rate(58.0, "judgement: hospital patients are older than the adult population", True)
HISTORY_YEARS = (1.0, 10.0)  # record length, uniform; judgement (EHR look-back of most networks)
NO_LABS = Rate(0.03, "judgement: registered patients with no laboratory result at all", True)
CONVENTIONAL_UNITS = Rate(
    0.3,
    "judgement: share of patients whose laboratory reports conventional units (mg/dL, g/dL; US "
    "practice) instead of SI units (umol/L, mmol/mol; European/Chinese practice)",
    True,
)

# --- metabolic and kidney ---------------------------------------------------------------------
DIABETES_T2 = Rate(
    0.105,
    "IDF Diabetes Atlas 10th ed. 2021: 10.5 % of adults 20-79 have diabetes (~90 % type 2)",
)
DIABETES_T1 = Rate(0.005, "IDF Atlas 2021 / Mobasseri 2020: type 1 prevalence ~0.5 % of adults")
HYPERTENSION = Rate(0.33, "WHO Global report on hypertension 2023: 33 % of adults 30-79")
CKD = Rate(
    0.12,
    "Hill NR et al. PLoS One 2016;11:e0158765: global CKD prevalence 13.4 % (stages 1-5); "
    "GBD 2017 (Lancet 2020;395:709): 9.1 %. 12 % taken.",
)
DKD_GIVEN_DIABETES = Rate(
    0.35,
    "Alicic RZ et al. CJASN 2017;12:2032: CKD develops in ~30-40 % of people with diabetes",
)
HTN_NEPHROPATHY_GIVEN_HTN = Rate(
    0.12,
    "judgement: USRDS 2022 attributes ~25-30 % of kidney failure to hypertension; CKD in "
    "~15 % of hypertensive adults (Crews DC, CJASN 2010), most of it hypertensive nephrosclerosis",
    True,
)
#: stage of CKD at the screening instant among CKD patients: G1-2 (with albuminuria), G3a, G3b,
#: G4, G5 and the eGFR range of each
CKD_STAGES: tuple[tuple[str, float, float, float], ...] = (
    ("G1-2", 0.40, 60.0, 105.0),
    ("G3a", 0.30, 45.0, 59.5),
    ("G3b", 0.15, 30.0, 44.5),
    ("G4", 0.10, 15.0, 29.5),
    ("G5", 0.05, 6.0, 14.5),
)
CKD_STAGES_SOURCE = Rate(
    0.0,
    "judgement: NHANES 1999-2004 (Coresh J, JAMA 2007;298:2038) gives stage 1-2 ~50 %, 3 ~47 %, "
    "4-5 ~3 % of CKD in the general population; hospital patients are shifted to later stages",
    True,
)
#: eGFR decline in mL/min/1.73 m2 per year (negative), uniform ranges
EGFR_SLOPE_NORMAL = (-1.2, -0.4)  # Glassock RJ, Kidney Int 2012: ~0.7-1 mL/min/yr after 40
EGFR_SLOPE_DKD = (-6.0, -2.0)  # Krolewski AS, Diabetes Care 2014: "progressive DKD" 3-6/yr
EGFR_SLOPE_HTN = (-3.0, -1.0)  # AASK (Wright JT, JAMA 2002): ~2 mL/min/yr
EGFR_SLOPE_OTHER_CKD = (-4.0, -1.0)  # judgement for glomerular / polycystic / unknown CKD
ALBUMINURIA_A3_GIVEN_DKD = Rate(
    0.45,
    "judgement: among DKD in nephrology clinics A3 (UACR > 300 mg/g) is common; UKPDS 64 (Adler "
    "AI, Kidney Int 2003) shows macroalbuminuria in a quarter to a half of patients with DKD",
    True,
)
NEPHROTIC_GIVEN_A3 = Rate(
    0.35,
    "judgement: share of A3 DKD with nephrotic-range proteinuria (>= 3.5 g/24 h)",
    True,
)
PROTEIN_PER_ALBUMIN = Rate(
    1.7,
    "KDIGO 2012 CKD guideline Table 7: AER 300 mg/24h ~ PER 500 mg/24h in the A3 range",
)
ESRD_DIALYSIS_GIVEN_G5 = Rate(
    0.5, "judgement: about half of G5 patients on maintenance dialysis", True
)
KIDNEY_BIOPSY_GIVEN_DKD = Rate(
    0.12,
    "judgement: biopsy in diabetics is uncommon; Sharma SG, CJASN 2013 (biopsy series)",
    True,
)

# --- hospital ---------------------------------------------------------------------------------
ADMISSION_RATE = Rate(
    0.08,
    "OECD Health Statistics 2023: ~130 hospital discharges per 1000 population per year; 0.08 "
    "per year at age 50, rising with age (rr 1.35 per decade) and comorbidity",
    True,
)
CURRENT_INPATIENT = Rate(
    0.01,
    "judgement: share of the network's patients in hospital at the screening instant (OECD "
    "~2.5-4 acute beds per 1000 population, enriched in a hospital patient registry)",
    True,
)
ICU_GIVEN_ADMISSION = Rate(
    0.12,
    "judgement: 10-15 % of acute admissions include an ICU stay (Wunsch H, Crit Care Med 2013)",
    True,
)
AKI_GIVEN_ADMISSION = Rate(
    0.15,
    "Susantitaphong P et al. CJASN 2013;8:1482: KDIGO-equivalent AKI in 21.6 % of hospitalised "
    "adults (pooled, mostly tertiary); 15 % taken for a ward mix",
)
AKI_GIVEN_ICU = Rate(
    0.5,
    "Hoste EAJ et al. (AKI-EPI) Intensive Care Med 2015;41:1411: AKI in 57.3 % of ICU patients",
)
AKI_STAGE_MIX = (0.70, 0.17, 0.13)
AKI_STAGE_SOURCE = Rate(
    0.0,
    "judgement from Wang HE, Am J Nephrol 2012;35:349 (hospital AKI: stage 1 ~78 %) and AKI-EPI "
    "(ICU AKI: stage 3 more frequent)",
    True,
)
RRT_GIVEN_AKI3 = Rate(
    0.4,
    "AKI-EPI 2015: RRT in 13.5 % of ICU AKI (mostly stage 3); 40 % of stage 3 taken",
    True,
)
OLIGURIA_GIVEN_AKI23_ICU = Rate(0.6, "judgement: oliguric course in most stage 2-3 ICU AKI", True)
AKI_CODED = Rate(
    0.5,
    "Grams ME et al. CJASN 2014;9:682: administrative AKI codes have ~30-50 % sensitivity",
)
POSTRENAL_GIVEN_AKI = Rate(0.07, "Liano F, Kidney Int 1996: obstruction in ~10 % of AKI", True)
INFECTION_GIVEN_ADMISSION = Rate(
    0.25,
    "judgement: infection (pneumonia, urinary, sepsis) as cause of ~1 in 4 medical admissions",
    True,
)
VENTILATION_GIVEN_ICU = Rate(0.35, "Wunsch H 2013: ~1/3 of ICU patients ventilated", True)
TRANSFUSION_GIVEN_ADMISSION = Rate(0.06, "judgement: ~5-10 % of admissions transfused", True)

# --- drugs ------------------------------------------------------------------------------------
METFORMIN_GIVEN_T2D = Rate(0.6, "judgement: first-line therapy (ADA Standards of Care)", True)
INSULIN_GIVEN_T2D = Rate(0.25, "judgement: ~25 % of type 2 diabetics use insulin (NHANES)", True)
SGLT2_GIVEN_T2D = Rate(0.2, "judgement: SGLT2i uptake 2024, higher with CKD", True)
RAS_GIVEN_HTN_OR_DKD = Rate(0.6, "judgement: ACE-i/ARB in most hypertensive/DKD patients", True)
STATIN_GIVEN_RISK = Rate(0.45, "judgement: statins in diabetics and adults > 60", True)
GC_COURSES_PER_YEAR = Rate(
    0.07,
    "Waljee AK et al. BMJ 2017;357:j1415: 21 % of US adults had a short oral corticosteroid "
    "course over 3 years (~7 % per year)",
)
GC_LONG_TERM = Rate(
    0.01,
    "Overman RA et al. Arthritis Care Res 2013;65:294: long-term glucocorticoid use 1.2 %",
)

# --- other conditions the four trials include or exclude on -----------------------------------
CONDITIONS: tuple[ConditionRate, ...] = (
    ConditionRate("heart_failure", (("I50.9", "Heart failure, unspecified", 0.5),
                  ("I50.22", "Chronic systolic (congestive) heart failure", 0.3),
                  ("I50.32", "Chronic diastolic (congestive) heart failure", 0.2)),
                  Rate(0.015, "Savarese G, Card Fail Rev 2017: HF in 1-2 % of adults"), 1.9),
    ConditionRate("atrial_fibrillation", (("I48.91", "Unspecified atrial fibrillation", 0.7),
                  ("I48.0", "Paroxysmal atrial fibrillation", 0.3)),
                  Rate(0.02, "Chugh SS, Circulation 2014: AF 2-4 % of adults"), 1.9),
    ConditionRate("unstable_angina", (("I20.0", "Unstable angina", 1.0),),
                  Rate(0.004, "judgement: unstable angina episode in the record", True), 1.6, 5.0),
    ConditionRate("congenital_heart", (("Q21.1", "Atrial septal defect", 1.0),),
                  Rate(0.002, "van der Linde D, JACC 2011: CHD ~0.3 % of adults", True), 1.0),
    ConditionRate("stroke_ischaemic", (("I63.9", "Cerebral infarction, unspecified", 0.8),
                  ("I63.81", "Other cerebral infarction due to occlusion of small artery", 0.2)),
                  Rate(0.012, "GBD 2019 Stroke (Lancet Neurol 2021): prevalent stroke ~1-3 %"),
                  1.8, 8.0),
    ConditionRate("stroke_haemorrhagic", (("I61.9", "Nontraumatic intracerebral hemorrhage", 1.0),),
                  Rate(0.003, "GBD 2019 Stroke: ICH ~1/4 of prevalent stroke", True), 1.8, 8.0),
    ConditionRate("malignancy", (("C50.919", "Malignant neoplasm of breast", 0.22),
                  ("C61", "Malignant neoplasm of prostate", 0.18),
                  ("C34.90", "Malignant neoplasm of lung", 0.12),
                  ("C18.9", "Malignant neoplasm of colon", 0.12),
                  ("C67.9", "Malignant neoplasm of bladder", 0.08),
                  ("C64.9", "Malignant neoplasm of kidney", 0.06),
                  ("C22.0", "Liver cell carcinoma", 0.05),
                  ("C85.90", "Non-Hodgkin lymphoma", 0.07),
                  ("C16.9", "Malignant neoplasm of stomach", 0.10)),
                  Rate(0.03, "ACS Cancer Treatment & Survivorship 2022: 5.4 % of the US "
                       "population are cancer survivors (mostly > 65 y)"), 1.6, 15.0),
    ConditionRate("kidney_transplant", (("Z94.0", "Kidney transplant status", 1.0),),
                  Rate(0.0008, "USRDS 2022: ~250k kidney recipients in the US (~0.08 %)"), 1.0,
                  15.0),
    ConditionRate("other_transplant", (("Z94.4", "Liver transplant status", 0.5),
                  ("Z94.1", "Heart transplant status", 0.2),
                  ("Z94.84", "Stem cells transplant status", 0.3)),
                  Rate(0.0005, "judgement from UNOS/CIBMTR registries", True), 1.0, 15.0),
    ConditionRate("hepatitis_b", (("B18.1", "Chronic viral hepatitis B", 1.0),),
                  Rate(0.03, "WHO Global hepatitis report 2024: 254 M (3.2 %) living with HBV"),
                  1.0, 20.0),
    ConditionRate("hepatitis_c", (("B18.2", "Chronic viral hepatitis C", 1.0),),
                  Rate(0.007, "WHO 2024: 50 M (0.7 %) with chronic HCV"), 1.0, 20.0),
    ConditionRate("hiv", (("B20", "HIV disease", 1.0),),
                  Rate(0.005, "UNAIDS 2023: 0.7 % of adults 15-49"), 0.9, 20.0),
    ConditionRate("tuberculosis", (("A15.0", "Tuberculosis of lung", 1.0),),
                  Rate(0.001, "WHO Global TB report 2023: incidence 133/100k/yr", True), 1.0, 3.0,
                  resolved=0.6),
    ConditionRate("immunodeficiency", (("D84.9", "Immunodeficiency, unspecified", 1.0),),
                  Rate(0.001, "judgement", True), 1.0),
    ConditionRate("copd", (("J44.9", "Chronic obstructive pulmonary disease, unspecified", 0.85),
                  ("J96.10", "Chronic respiratory failure", 0.15)),
                  Rate(0.05, "GOLD 2023 / Adeloye D, Lancet Respir Med 2022: COPD ~10 % of "
                       "30-79-year-olds; 5 % at 50"), 1.6),
    ConditionRate("liver_failure", (("K72.10", "Chronic hepatic failure without coma", 0.4),
                  ("K74.60", "Unspecified cirrhosis of liver", 0.6)),
                  Rate(0.004, "Moon AM, Clin Gastroenterol Hepatol 2020: cirrhosis ~0.25 %", True),
                  1.3),
    ConditionRate("glomerulonephritis", (("N05.9", "Unspecified nephritic syndrome", 0.4),
                  ("N02.8", "Recurrent hematuria with other morphologic changes (IgA)", 0.3),
                  ("N03.9", "Chronic nephritic syndrome", 0.3)),
                  Rate(0.002, "judgement: primary GN ~0.1-0.3 % (Hoy WE, Kidney Int 2012)", True)),
    ConditionRate("lupus_nephritis", (("M32.14", "Glomerular disease in SLE", 1.0),),
                  Rate(0.0003, "Hoover PJ, Kidney Int 2016: SLE ~0.1 %, nephritis in ~40 %", True)),
    ConditionRate("anca_vasculitis", (("M31.31", "Granulomatosis with polyangiitis with renal "
                  "involvement", 0.6), ("M31.7", "Microscopic polyangiitis", 0.4)),
                  Rate(0.0002, "Watts RA, Rheumatology 2022: AAV ~200-400 per million", True), 1.2),
    ConditionRate("anti_gbm_tma", (("M31.0", "Hypersensitivity angiitis (anti-GBM)", 0.4),
                  ("M31.1", "Thrombotic microangiopathy", 0.4),
                  ("D89.1", "Cryoglobulinemia", 0.2)),
                  Rate(0.0001, "judgement: rare glomerular/vascular causes of AKI", True)),
    ConditionRate("adpkd", (("Q61.2", "Polycystic kidney, adult type", 1.0),),
                  Rate(0.001, "Lanktree MB, JASN 2018: ADPKD ~1 in 1000", True), 1.0, 30.0),
    ConditionRate("vte", (("I26.99", "Other pulmonary embolism without acute cor pulmonale", 0.3),
                  ("I82.409", "Acute embolism and thrombosis of deep veins of lower extremity",
                   0.6), ("D68.9", "Coagulation defect, unspecified", 0.1)),
                  Rate(0.02, "Heit JA, Nat Rev Cardiol 2015: lifetime VTE ~2-5 %", True), 1.5),
    ConditionRate("rheumatoid_arthritis", (("M06.9", "Rheumatoid arthritis, unspecified", 1.0),),
                  Rate(0.006, "Almutairi K, Rheumatol Int 2021: RA ~0.5 %"), 1.3, 20.0),
    ConditionRate("hyperlipidaemia", (("E78.5", "Hyperlipidemia, unspecified", 1.0),),
                  Rate(0.25, "judgement: coded hyperlipidaemia in ~1/4 of adults", True), 1.4),
    ConditionRate("substance_use", (("F19.20", "Other psychoactive substance dependence", 1.0),),
                  Rate(0.01, "judgement", True), 0.8),
    ConditionRate("mental_illness", (("F32.9", "Major depressive disorder, single episode", 0.8),
                  ("F20.9", "Schizophrenia, unspecified", 0.2)),
                  Rate(0.06, "judgement: coded depression/psychosis in the record", True), 1.0),
    ConditionRate("pregnancy", (("Z33.1", "Pregnant state, incidental", 0.7),
                  ("O09.90", "Supervision of high risk pregnancy, unspecified", 0.3)),
                  Rate(0.05, "judgement: ~5 % of women 18-45 pregnant at a given time (US birth "
                       "rate ~60/1000 women 15-44 per year x 0.75 year)", True), 1.0, 0.6,
                  female_only=True, max_age=46.0),
    ConditionRate("lactation", (("Z39.1", "Encounter for care of lactating mother", 1.0),),
                  Rate(0.02, "judgement", True), 1.0, 0.5, female_only=True, max_age=46.0),
    ConditionRate("blood_product_allergy", (("Z88.8", "Allergy status to other drugs", 0.7),
                  ("T80.89XA", "Other complications following transfusion", 0.3)),
                  Rate(0.003, "judgement", True), 1.0),
)  # fmt: skip
