"""The bundled protocols against the registry text of the seed trials (../shared/seeds).

Criteria: same count, ids inc-N/exc-N in registry order, same sentence (whitespace normalised,
markdown escapes removed). Design, doses, sites and the numeric thresholds are checked against
what the seed says, so that a reviewer can trust the YAML mirrors the registry.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trialsieve.protocols.loader import load_bundled
from trialsieve.protocols.model import Protocol
from trialsieve.units import to_canonical

SEED_OF = {
    "NCT06954740": "000_0ddc73cf34b57ce6.txt",
    "NCT06969807": "001_780a18cb8f28058c.txt",
    "NCT04194671": "002_33cea66636c699bb.txt",
    "NCT07240987": "003_127af814233bb252.txt",
}
SECOND_RENDERING = ("NCT06969807", "004_b849298dba50a5d2.txt")

_ITEM = re.compile(r"^\s*(?:(\d+)\.|[•*\-])\s+(.*)$")
_END = re.compile(r"^(Minimum Eligible Age|Trial design)\b")


def _norm(text: str) -> str:
    return " ".join(text.replace("\\<", "<").replace("\\>", ">").split())


def _items(block: list[str]) -> list[str]:
    out: list[str] = []
    numbers: list[int] = []
    for line in block:
        m = _ITEM.match(line)
        if m:
            if m.group(1):
                numbers.append(int(m.group(1)))
            out.append(m.group(2))
        elif line.strip() and out:
            out[-1] += " " + line.strip()
    if numbers:  # numbered lists keep their numbers: they must be the positions
        assert numbers == list(range(1, len(out) + 1))
    return [_norm(x) for x in out]


def seed_criteria(text: str) -> tuple[list[str], list[str]]:
    """(inclusion, exclusion) sentences of a registry rendering, in order."""
    lines = text.splitlines()
    inc = next(i for i, s in enumerate(lines) if re.match(r"^\s*Inclusion [Cc]riteria", s))
    exc = next(
        i for i, s in enumerate(lines) if i > inc and re.match(r"^\s*Exclusion [Cc]riteria", s)
    )
    end = next((i for i, s in enumerate(lines) if i > exc and _END.match(s.strip())), len(lines))
    return _items(lines[inc + 1 : exc]), _items(lines[exc + 1 : end])


@pytest.fixture(scope="module")
def protocols() -> dict[str, Protocol]:
    return {p.id: p for p in load_bundled()}


def _seed(seeds_dir: Path, name: str) -> str:
    return (seeds_dir / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("trial_id", sorted(SEED_OF))
def test_criteria_match_seed(trial_id: str, protocols: dict[str, Protocol], seeds_dir: Path):
    inc, exc = seed_criteria(_seed(seeds_dir, SEED_OF[trial_id]))
    p = protocols[trial_id]
    assert [c.id for c in p.inclusion] == [f"inc-{i}" for i in range(1, len(inc) + 1)]
    assert [c.id for c in p.exclusion] == [f"exc-{i}" for i in range(1, len(exc) + 1)]
    assert [_norm(c.text) for c in p.inclusion] == inc
    assert [_norm(c.text) for c in p.exclusion] == exc


def test_seed_counts_are_what_the_registry_lists(seeds_dir: Path):
    counts = {t: tuple(map(len, seed_criteria(_seed(seeds_dir, f)))) for t, f in SEED_OF.items()}
    assert counts == {
        "NCT06954740": (3, 17),
        "NCT06969807": (8, 13),
        "NCT04194671": (4, 20),
        "NCT07240987": (4, 13),
    }


def test_second_rendering_agrees(protocols: dict[str, Protocol], seeds_dir: Path):
    trial_id, name = SECOND_RENDERING
    assert seed_criteria(_seed(seeds_dir, name)) == seed_criteria(
        _seed(seeds_dir, SEED_OF[trial_id])
    )
    inc, exc = seed_criteria(_seed(seeds_dir, name))
    assert [_norm(c.text) for c in protocols[trial_id].criteria] == inc + exc


def test_inc2_of_aki_trial_keeps_sub_items(protocols: dict[str, Protocol]):
    text = protocols["NCT06954740"].criterion("inc-2").text
    for mark in ("①", "②", "③", "MDRD", "75 ml/min/1.73m²"):
        assert mark in text


def _field(text: str, header: str) -> str:
    lines = [s.strip() for s in text.splitlines()]
    i = lines.index(header)
    return next(s for s in lines[i + 1 :] if s)


@pytest.mark.parametrize("trial_id", ["NCT06954740", "NCT06969807", "NCT07240987"])
def test_design_matches_clinicaltrials_gov_seed(
    trial_id: str, protocols: dict[str, Protocol], seeds_dir: Path
):
    text = _seed(seeds_dir, SEED_OF[trial_id])
    p = protocols[trial_id]
    assert p.status == _field(text, "Recruitment Status")
    assert "/".join(p.phase) == _field(text, "Clinical Phase")
    assert f"{p.design.enrolment} participants" == _field(text, "Total Enrollment")
    assert p.design.allocation == _field(text, "Allocation Method")
    assert p.design.model == _field(text, "Intervention Model")
    assert p.design.masking == _field(text, "Blinding Strategy")
    assert p.design.purpose == _field(text, "Primary Study Purpose")
    assert f"{p.design.age.min_years:g} Years" == _field(text, "Minimum Eligible Age")
    if "Maximum Eligible Age" in text:
        assert f"{p.design.age.max_years:g} Years" == _field(text, "Maximum Eligible Age")
    else:
        assert p.design.age.max_years is None
    assert p.design.sex == _field(text, "Eligible Sex")
    assert f"Last Updated: {p.source['last_updated']}" in text.splitlines()


def test_design_of_veeva_rendered_trial(protocols: dict[str, Protocol], seeds_dir: Path):
    text = _seed(seeds_dir, SEED_OF["NCT04194671"])
    p = protocols["NCT04194671"]
    assert "80 estimated patients" in text and p.design.enrolment == 80
    assert "18 to 65 years old" in text
    assert (p.design.age.min_years, p.design.age.max_years) == (18, 65)
    assert p.design.allocation == "RANDOMIZED" and "Randomized" in text
    assert p.design.masking == "SINGLE" and "Single Blind" in text
    assert p.design.model == "PARALLEL" and "Parallel Assignment" in text
    assert p.phase == ["PHASE1", "PHASE2"]
    assert [a.type for a in p.arms] == ["EXPERIMENTAL", "PLACEBO_COMPARATOR"]


def _sites(text: str) -> list[tuple[str, str]]:
    lines = [s.strip() for s in text.splitlines()]
    start = lines.index("Locations") + 1
    end = lines.index("Countries")
    block = [s for s in lines[start:end] if s and not s.startswith("Explore where")]
    return [(block[i], block[i + 2].removeprefix("Site Status ")) for i in range(0, len(block), 3)]


@pytest.mark.parametrize("trial_id", ["NCT06954740", "NCT06969807"])
def test_sites_match_seed(trial_id: str, protocols: dict[str, Protocol], seeds_dir: Path):
    seed_sites = _sites(_seed(seeds_dir, SEED_OF[trial_id]))
    assert len(seed_sites) == 6
    assert [(s.name, s.status) for s in protocols[trial_id].sites] == seed_sites


def test_dose_schedules(protocols: dict[str, Protocol]):
    (aki,) = protocols["NCT06954740"].arms[0].interventions
    assert [(d.amount, d.unit, d.days, d.weeks) for d in aki.doses] == [
        (1.0e6, "cells/kg", [1, 4, 8, 15], [])
    ]
    (dkd,) = protocols["NCT06969807"].arms[0].interventions
    assert dkd.route == "intravenous"
    assert [(d.amount, d.unit, d.days, d.weeks) for d in dkd.doses] == [
        (1.0e6, "cells/kg", [1, 14, 28], []),
        (1.5e6, "cells/kg", [], [8, 12, 16, 20, 24]),
    ]
    ckd = protocols["NCT07240987"]
    assert [a.name for a in ckd.arms] == ["DKD", "HN", "non-DKD", "non-HN"]
    msc = ckd.arms[0].interventions[0]
    assert (msc.doses[0].amount, msc.doses[0].unit) == (1.0e6, "cells/kg")
    assert msc.diluent is not None and "250 mL" in msc.diluent
    assert ckd.design.masked_roles == ["PARTICIPANT", "CARE_PROVIDER"]


def _labs(node: object) -> list[dict]:
    """Every lab / egfr node in a rule, depth first."""
    found: list[dict] = []
    if isinstance(node, dict):
        for key, body in node.items():
            if key in ("lab", "egfr"):
                found.append({"node": key, **body})
            else:
                found += _labs(body)
    elif isinstance(node, list):
        for sub in node:
            found += _labs(sub)
    return found


def _threshold(lab: dict) -> tuple[str, str, float]:
    name = lab.get("analyte", "egfr")
    if "value" in lab and "unit" in lab:
        return name, lab["op"], to_canonical(name, lab["value"], lab["unit"])
    if "uln_multiple" in lab:
        return name, lab["op"], lab["uln_multiple"]
    return name, lab["op"], lab["value"]


# (trial, criterion) -> thresholds in canonical units, exactly as the registry sentence says
EXPECTED_THRESHOLDS = {
    ("NCT06954740", "exc-7"): [
        ("ast", ">", 5), ("alt", ">", 5), ("bilirubin_total", ">", 3), ("wbc", "<", 2.0),
        ("hemoglobin", "<", 60.0), ("neutrophils", "<", 1.0), ("platelets", "<", 50.0),
    ],
    ("NCT06969807", "inc-4"): [("urine_protein_24h", ">=", 3.5), ("uacr", ">", 1000.0)],
    ("NCT06969807", "inc-5"): [("egfr", ">=", 20)],
    ("NCT06969807", "inc-6"): [("sbp", "<=", 160.0), ("dbp", "<=", 100.0)],
    ("NCT06969807", "inc-7"): [("hba1c", "<", 9.0)],
    ("NCT06969807", "exc-5"): [("triglycerides", ">=", 6.2), ("ldl", ">=", 4.1)],
    ("NCT04194671", "exc-9"): [("egfr", "<", 60)],
    ("NCT04194671", "exc-18"): [("platelets", "<", 25.0)],
    ("NCT07240987", "inc-3"): [("egfr", ">=", 15), ("egfr", "<", 60), ("uacr", ">", 300.0)],
    ("NCT07240987", "exc-1"): [("hemoglobin", "<", 30.0)],
}  # fmt: skip


@pytest.mark.parametrize(("trial_id", "crit_id"), sorted(EXPECTED_THRESHOLDS))
def test_thresholds_exact(trial_id: str, crit_id: str, protocols: dict[str, Protocol]):
    rule = protocols[trial_id].criterion(crit_id).rule
    got = [_threshold(lab) for lab in _labs(rule)]
    assert got == EXPECTED_THRESHOLDS[(trial_id, crit_id)]  # exact: no float drift at boundaries


def test_age_rules_match_registry_ages(protocols: dict[str, Protocol]):
    ages = {
        "NCT06954740": ("inc-1", {"min": 18, "max": 75}),
        "NCT06969807": ("inc-1", {"min": 45, "max": 80}),
        "NCT04194671": ("inc-2", {"min": 18, "max": 65}),
        "NCT07240987": ("inc-4", {"min": 18}),
    }
    for trial_id, (crit_id, bounds) in ages.items():
        p = protocols[trial_id]
        assert p.criterion(crit_id).rule == {"age": bounds}
        assert p.design.age.min_years == bounds["min"]
        assert p.design.age.max_years == bounds.get("max")
    # "younger than 65" = at most 64 whole years
    assert protocols["NCT04194671"].criterion("exc-9").rule["all"][0] == {"age": {"max": 64}}


def test_seed_specific_semantics(protocols: dict[str, Protocol]):
    aki = protocols["NCT06954740"]
    rule = aki.criterion("inc-2").rule["aki"]
    assert rule["baseline"] == "lowest-3m-1y-mdrd75"
    # no onset_within: the look-back comes from the (site-overridable) protocol setting
    assert "onset_within" not in rule and aki.settings["aki_lookback_days"] == 7
    conditions = rule["condition"]["any_of"]
    assert {"creatinine_rise": {"umol_l": 26.5, "hours": 48}} in conditions
    assert {"urine_output": {"below_ml_kg_h": 0.5, "hours": 6}} in conditions
    assert {
        "creatinine_ratio": {"op": ">=", "value": 1.5, "baseline": "lowest-3m-1y-mdrd75"}
    } in conditions

    severe = protocols["NCT04194671"].criterion("inc-1").rule["aki"]["condition"]["any_of"]
    assert {"creatinine_ratio": {"op": ">", "value": 2, "baseline": "min-48h"}} in severe
    assert {"urine_output": {"below_ml_kg_h": 0.5, "hours": 12}} in severe
    pre_aki = protocols["NCT04194671"].criterion("exc-9").rule["all"][1]["egfr"]
    assert pre_aki["from"] == "aki_baseline"

    dkd = protocols["NCT06969807"]
    assert dkd.criterion("inc-5").rule["egfr"]["equation"] == dkd.settings["egfr_equation"]
    assert dkd.settings["egfr_equation"] == "ckd-epi-2021"
    steroids = protocols["NCT06954740"].criterion("exc-10").rule["exposure_days"]
    assert (steroids["op"], steroids["value"], steroids["window"]) == (">", 7, {"days": 30})


MANUAL_KINDS = {
    # consent, willingness, life expectancy, investigator opinion, pathology, allergy, pregnancy
    "NCT06954740": ["inc-3", "exc-14", "exc-15", "exc-16", "exc-17"],
    "NCT06969807": ["inc-3", "inc-8", "exc-1", "exc-9", "exc-10", "exc-12", "exc-13"],
    "NCT04194671": ["inc-3", "inc-4", "exc-3", "exc-6", "exc-16", "exc-20"],
    "NCT07240987": ["inc-1", "inc-2", "exc-6", "exc-7", "exc-11", "exc-12"],
}


@pytest.mark.parametrize("trial_id", sorted(MANUAL_KINDS))
def test_judgement_criteria_are_manual(trial_id: str, protocols: dict[str, Protocol]):
    p = protocols[trial_id]
    for crit_id in MANUAL_KINDS[trial_id]:
        c = p.criterion(crit_id)
        assert c.manual and c.rule is None, crit_id


def test_pathology_criteria_attach_dkd_codes_and_biopsies(protocols: dict[str, Protocol]):
    p = protocols["NCT06969807"]
    evidence = p.criterion("inc-3").evidence
    sets = [ev["has"]["concepts"] for ev in evidence]
    assert sets == ["diabetic_kidney_disease", "kidney_biopsy"]
    biopsy = p.concept_sets["kidney_biopsy"].codes
    assert biopsy["cpt"] == ["50200", "50205"] and "0TB0*" in biopsy["icd10pcs"]
    assert "E11.2*" in p.concept_sets["diabetic_kidney_disease"].codes["icd10cm"]


def test_dialysis_concept_set(protocols: dict[str, Protocol]):
    codes = protocols["NCT06954740"].concept_sets["dialysis"].codes
    assert codes["cpt"] == ["90935-90999"]
    assert codes["icd10pcs"] == ["5A1D*"]
    assert codes["icd9proc"] == ["39.95", "54.98"]
    assert {"Z99.2", "Z49*", "N18.6"} <= set(codes["icd10cm"])
