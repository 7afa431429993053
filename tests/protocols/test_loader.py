"""Protocol loader and model: bundled files load, broken files fail with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from trialsieve.protocols.loader import (
    BUNDLED_DIR,
    ProtocolError,
    bundled_protocol_paths,
    load_bundled,
    load_protocol,
)
from trialsieve.protocols.model import (
    ConceptSet,
    Criterion,
    Protocol,
    code_entry_problem,
    rule_issues,
)

BUNDLED_IDS = ["NCT04194671", "NCT06954740", "NCT06969807", "NCT07240987"]
AKI_FILE = BUNDLED_DIR / "NCT06954740.yaml"


def test_bundled_paths_and_ids():
    assert [p.stem for p in bundled_protocol_paths()] == BUNDLED_IDS


def test_every_bundled_file_loads():
    protocols = load_bundled()
    assert [p.id for p in protocols] == BUNDLED_IDS
    for p in protocols:
        kinds = [c.kind for c in p.criteria]
        assert kinds == sorted(kinds, key=lambda k: k == "exclusion")
        assert all(c.id.startswith("inc-") for c in p.inclusion)
        assert all(c.id.startswith("exc-") for c in p.exclusion)
        # every criterion: exactly one of rule / manual
        assert all((c.rule is None) != (c.manual is None) for c in p.criteria)


def test_load_bundled_subset_sorted_and_unknown():
    assert [p.id for p in load_bundled(["NCT07240987", "NCT04194671"])] == [
        "NCT04194671",
        "NCT07240987",
    ]
    with pytest.raises(ProtocolError, match="NCT00000000"):
        load_bundled(["NCT00000000"])


def _line_of(text: str, needle: str, nth: int = 0) -> int:
    """1-based line of the nth occurrence of ``needle``."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return hits[nth]


def _broken(tmp_path: Path, old: str, new: str, count: int = 1) -> tuple[Path, str]:
    text = AKI_FILE.read_text(encoding="utf-8")
    assert old in text
    broken = text.replace(old, new, count)
    path = tmp_path / "broken.yaml"
    path.write_text(broken, encoding="utf-8")
    return path, broken


# (old, new, marker of the line that must be reported, field path, words of the reason)
BREAKAGES = [
    (
        'op: ">", uln_multiple: 5}}\n          - {lab: {analyte: alt',
        'op: "=>", uln_multiple: 5}}\n          - {lab: {analyte: alt',
        "analyte: ast",
        "criteria.exclusion[6].rule.any[0].lab.op",
        "unknown op '=>'",
    ),
    (
        "analyte: wbc,",
        "analyte: leukocytes,",
        "analyte: leukocytes",
        "criteria.exclusion[6].rule.any[3].lab.analyte",
        "unknown analyte",
    ),
    (
        'unit: "g/dL"',
        'unit: "g/cup"',
        "g/cup",
        "criteria.exclusion[6].rule.any[4].lab.unit",
        "unknown unit 'g/cup'",
    ),
    (
        "concepts: dialysis,",
        "concepts: dialysys,",
        "concepts: dialysys",
        "criteria.exclusion[10].rule.has.concepts",
        "unknown concept set 'dialysys'",
    ),
    (
        "window: {months: 6}",
        "window: {weeks: 26}",
        "weeks: 26",
        "criteria.exclusion[5].rule.has.window.weeks",
        "unknown window unit",
    ),
    (
        "rule: {age: {min: 18, max: 75}}",
        "rule: {age: {min: 80, max: 75}}",
        "min: 80",
        "criteria.inclusion[0].rule.age",
        "min is greater than max",
    ),
    (
        "baseline: lowest-3m-1y-mdrd75}",
        "baseline: lowest-ever}",
        "lowest-ever",
        "criteria.inclusion[1].rule.aki.condition.any_of[1].creatinine_ratio.baseline",
        "unknown baseline",
    ),
    (
        "id: exc-11",
        "id: exc-12",
        "id: exc-12",
        "criteria.exclusion[10].id",
        "expected id 'exc-11'",
    ),
    (
        '      text: "Post-renal AKI."\n',
        "",
        "id: exc-1",
        "criteria.exclusion[0].text",
        "Field required",
    ),
    (
        "  enrolment: 50\n",
        "  enrolment: 50\n  enrollment: 50\n",
        "enrollment: 50",
        "design.enrollment",
        "unknown field",
    ),
    (
        "  enrolment: 50\n",
        "  enrolment: 50\n  enrolment: 60\n",
        "enrolment: 60",
        "design.enrolment",
        "duplicate key",
    ),
    (
        '"C00-C96"',
        '"C96-C00"',
        "C96-C00",
        "concept_sets.malignancy.codes.icd10cm[0]",
        "start is after end",
    ),
    (
        'icd9proc: ["39.95", "54.98"]',
        'icd9px: ["39.95", "54.98"]',
        "icd9px",
        "concept_sets.dialysis.codes.icd9px",
        "unknown code system alias",
    ),
    (
        "days: [1, 4, 8, 15]",
        "days: [8, 1]",
        "days: [8, 1]",
        "arms[0].interventions[0].doses[0].days",
        "ascending",
    ),
    (
        "status: RECRUITING\nphase",
        "status: OPEN\nphase",
        "status: OPEN",
        "status",
        "Input should be",
    ),
]


@pytest.mark.parametrize(("old", "new", "marker", "field", "why"), BREAKAGES)
def test_errors_name_file_line_and_field(
    tmp_path: Path, old: str, new: str, marker: str, field: str, why: str
):
    path, text = _broken(tmp_path, old, new)
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    message = str(info.value)
    expected_prefix = f"{path}:{_line_of(text, marker)}: {field}: "
    first = message.splitlines()[0]
    assert first.startswith(expected_prefix), message
    assert why in first
    assert info.value.issues[0][:3] == (str(path), _line_of(text, marker), field)


def test_rule_and_manual_together_is_an_error(tmp_path: Path):
    path, text = _broken(
        tmp_path,
        '      manual: "Investigator: severe cardiovascular disease?"\n',
        '      manual: "Investigator"\n      rule: {age: {min: 1}}\n',
    )
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    line = _line_of(text, "id: exc-4")
    assert str(info.value).startswith(f"{path}:{line}: criteria.exclusion[3]: ")
    assert "exactly one of 'rule' or 'manual'" in str(info.value)


def test_yaml_syntax_error_has_line(tmp_path: Path):
    path, text = _broken(tmp_path, "  enrolment: 50\n", "  enrolment: [50\n")
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    message = str(info.value)
    assert message.startswith(f"{path}:")
    line = int(message.split(":")[1])
    assert _line_of(text, "enrolment: [50") <= line <= _line_of(text, "enrolment: [50") + 2


def test_unquoted_numeric_code_is_reported(tmp_path: Path):
    dkd = (BUNDLED_DIR / "NCT06969807.yaml").read_text(encoding="utf-8")
    path = tmp_path / "numeric.yaml"
    path.write_text(dkd.replace('cpt: ["50200", "50205"]', "cpt: [50200, 50205]"), "utf-8")
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    assert "concept_sets.kidney_biopsy.codes.cpt[0]" in str(info.value)
    assert "quote codes" in str(info.value)


def test_several_errors_are_all_listed_in_file_order(tmp_path: Path):
    text = AKI_FILE.read_text(encoding="utf-8")
    text = text.replace("analyte: wbc,", "analyte: leukocytes,").replace(
        "concepts: dialysis,", "concepts: dialysys,"
    )
    path = tmp_path / "two.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    lines = [issue[1] for issue in info.value.issues]
    assert len(lines) == 2 and lines == sorted(lines)


def test_missing_file():
    with pytest.raises(ProtocolError, match="nope.yaml"):
        load_protocol(Path("/nonexistent/nope.yaml"))


# ---- rule grammar, node by node -------------------------------------------------------------

SETS = {"dialysis"}

VALID_RULES = [
    {"age": {"min": 18}},
    {"sex": "female"},
    {"has": {"concepts": "dialysis", "kinds": ["procedure"], "window": "ever"}},
    {"has": {"concepts": {"codes": {"icd10cm": ["N17*"]}}, "window": {"days": 30}}},
    {"has": {"concepts": "dialysis", "window": {"hours": 48}, "route": "intravenous"}},
    {"lab": {"analyte": "hba1c", "window": {"months": 3}, "agg": "latest", "op": "<",
             "value": 75, "unit": "mmol/mol"}},
    {"lab": {"analyte": "ast", "window": {"days": 7}, "agg": "max", "op": ">",
             "uln_multiple": 5}},
    {"lab": {"analyte": "neutrophils", "window": {"days": 7}, "agg": "every", "op": ">=",
             "lln_multiple": 1}},
    {"count": {"concepts": "dialysis", "kinds": ["procedure"], "window": {"years": 1},
               "op": ">=", "value": 2}},
    {"exposure_days": {"concepts": "dialysis", "window": {"days": 30}, "op": ">", "value": 7}},
    {"egfr": {"equation": "ckd-epi-2009", "window": {"days": 90}, "agg": "min", "op": "<",
              "value": 30}},
    {"egfr": {"equation": "mdrd-175", "from": "aki_baseline", "baseline": "kdigo", "op": "<",
              "value": 60}},
    {"aki": {"condition": {"kdigo_stage": {"min": 2}}, "onset_within": {"days": 7}}},
    # onset_within / the baseline-eGFR window default to settings.aki_lookback_days
    {"aki": {"condition": {"any_of": [{"urine_output": {"below_ml_kg_h": 0.5, "hours": 6}}]},
             "baseline": "lowest-3m-1y-mdrd75"}},
    {"egfr": {"equation": "ckd-epi-2021", "from": "aki_baseline", "baseline": "kdigo",
              "window": {"days": 3}, "op": "<", "value": 60}},
    {"not": {"sex": "male"}},
    {"all": [{"manual": "check"}, {"any": [{"age": {"max": 64}}]}]},
]  # fmt: skip


@pytest.mark.parametrize("rule", VALID_RULES)
def test_valid_rules(rule: dict):
    assert rule_issues(rule, SETS) == []


INVALID_RULES = [
    ({"age": {}}, ("age",), "age needs"),
    ({"age": {"min": "18"}}, ("age", "min"), "number"),
    ({"sex": "F"}, ("sex",), "sex must be"),
    ({"has": {"concepts": "dialysis"}}, ("has",), "missing required field 'window'"),
    ({"has": {"concepts": "x", "window": "ever"}}, ("has", "concepts"), "unknown concept set"),
    ({"has": {"concepts": "dialysis", "window": "ever", "kinds": ["lab", "note"]}},
     ("has", "kinds", 1), "unknown event kind"),
    ({"has": {"concepts": {"codes": {"icd10cm": ["N17-"]}}, "window": "ever"}},
     ("has", "concepts", "codes"), "malformed range"),
    ({"lab": {"analyte": "ast", "window": "ever", "agg": "latest", "op": ">", "value": 5}},
     ("lab",), "missing required field 'unit'"),
    ({"lab": {"analyte": "ast", "window": "ever", "agg": "latest", "op": ">",
              "uln_multiple": 5, "value": 200, "unit": "U/L"}}, ("lab",), "exactly one"),
    ({"lab": {"analyte": "ast", "window": "ever", "agg": "last", "op": ">",
              "uln_multiple": 5}}, ("lab", "agg"), "unknown aggregation"),
    ({"lab": {"analyte": "ast", "window": "ever", "agg": "latest", "op": ">",
              "uln_multiple": 0}}, ("lab", "uln_multiple"), "> 0"),
    ({"egfr": {"equation": "cockcroft", "window": "ever", "agg": "latest", "op": "<",
               "value": 60}}, ("egfr", "equation"), "unknown equation"),
    ({"egfr": {"equation": "ckd-epi-2021", "from": "aki_baseline", "op": "<", "value": 60}},
     ("egfr",), "missing required field 'baseline'"),
    ({"aki": {"condition": {"kdigo_stage": {"min": 4}}, "onset_within": "ever"}},
     ("aki", "condition", "kdigo_stage", "min"), "1, 2 or 3"),
    ({"aki": {"condition": {"oliguria": {}}, "onset_within": "ever"}},
     ("aki", "condition", "oliguria"), "unknown AKI condition"),
    ({"aki": {"condition": {"any_of": []}, "onset_within": "ever"}},
     ("aki", "condition", "any_of"), "non-empty"),
    ({"all": []}, ("all",), "non-empty"),
    ({"any": [{"sex": "female"}, {"age": {"min": 1}, "sex": "male"}]}, ("any", 1),
     "exactly one"),
    ({"manual": ""}, ("manual",), "manual needs"),
    ({"count": {"concepts": "dialysis", "window": {"days": -1}, "op": ">", "value": 1}},
     ("count", "window", "days"), "positive"),
    ({"exposure_days": {"concepts": "dialysis", "window": "ever", "op": "=", "value": 7}},
     ("exposure_days", "op"), "unknown op"),
    ({"score": {"name": "sofa"}}, ("score",), "unknown rule node"),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "path", "why"), INVALID_RULES)
def test_invalid_rules(rule: dict, path: tuple, why: str):
    issues = rule_issues(rule, SETS)
    assert issues, rule
    assert issues[0][0] == path
    assert why in issues[0][1]


@pytest.mark.parametrize(
    ("system", "entry", "ok"),
    [
        ("icd10cm", "N17.9", True),
        ("icd10cm", "N18", True),
        ("icd10cm", "Z49*", True),
        ("icd10cm", "C00-C97", True),
        ("icd10cm", "O00-O9A", True),
        ("cpt", "90935-90999", True),
        ("loinc", "2160-0", True),
        ("icd10cm", "C97-C00", False),
        ("icd10cm", "C00-C9", False),
        ("icd10cm", "N1*7", False),
        ("icd10cm", " N17", False),
        ("icd10cm", "", False),
    ],
)
def test_code_entries(system: str, entry: str, ok: bool):
    assert (code_entry_problem(system, entry) is None) == ok


def test_concept_set_model():
    cs = ConceptSet(name="x", analytes=["lvef"])
    assert cs.codes == {}
    with pytest.raises(ValidationError, match="needs codes or analytes"):
        ConceptSet(name="x")
    with pytest.raises(ValidationError, match="unknown analyte"):
        ConceptSet(name="x", analytes=["ejection"])
    with pytest.raises(ValidationError, match="unknown code system alias"):
        ConceptSet(name="x", codes={"icd11": ["5A"]})


def test_criterion_model():
    c = Criterion(id="inc-1", kind="inclusion", text="Age >= 18", rule={"age": {"min": 18}})
    assert c.automatic
    with pytest.raises(ValidationError, match="exactly one"):
        Criterion(id="inc-1", kind="inclusion", text="t")
    with pytest.raises(ValidationError, match="must be exc-N"):
        Criterion(id="inc-1", kind="exclusion", text="t", manual="m")
    with pytest.raises(ValidationError, match="rule.age"):
        Criterion(id="inc-1", kind="inclusion", text="t", rule={"age": {"mn": 1}})


def _minimal(**over: object) -> dict:
    data: dict = {
        "id": "NCT00000001",
        "title": "t",
        "status": "RECRUITING",
        "phase": ["PHASE2"],
        "design": {
            "allocation": "NA", "model": "SINGLE_GROUP", "masking": "NONE",
            "purpose": "TREATMENT", "enrolment": 10, "age": {"min_years": 18},
            "sex": "ALL", "healthy_volunteers": False,
        },
        "arms": [{"name": "a", "type": "EXPERIMENTAL", "interventions": []}],
        "concept_sets": {"dialysis": {"codes": {"icd10cm": ["Z99.2"]}}},
        "criteria": {
            "inclusion": [{"id": "inc-1", "text": "adult", "rule": {"age": {"min": 18}}}],
            "exclusion": [{"id": "exc-1", "text": "dialysis",
                           "rule": {"has": {"concepts": "dialysis", "window": "ever"}}}],
        },
    }  # fmt: skip
    data.update(over)
    return data


def test_protocol_model_accepts_file_layout_and_flat_list():
    p = Protocol.model_validate(_minimal())
    assert [(c.id, c.kind) for c in p.criteria] == [("inc-1", "inclusion"), ("exc-1", "exclusion")]
    assert p.concept_sets["dialysis"].name == "dialysis"
    flat = Protocol.model_validate(_minimal(criteria=[c.model_dump() for c in p.criteria]))
    assert flat.criteria == p.criteria


def test_protocol_model_checks_references_and_order():
    bad_ref = _minimal()
    bad_ref["criteria"]["exclusion"][0]["rule"]["has"]["concepts"] = "transplant"
    with pytest.raises(ValidationError, match="unknown concept set 'transplant'"):
        Protocol.model_validate(bad_ref)
    swapped = _minimal()
    p = Protocol.model_validate(swapped)
    with pytest.raises(ValidationError, match="inclusion criteria come before"):
        Protocol.model_validate(_minimal(criteria=[c.model_dump() for c in p.criteria][::-1]))
    with pytest.raises(ValidationError, match="unknown setting"):
        Protocol.model_validate(_minimal(settings={"aki_lookback": 7}))
    with pytest.raises(ValidationError, match="unknown eGFR equation"):
        Protocol.model_validate(_minimal(settings={"egfr_equation": "cg"}))


def test_protocol_lookups():
    (p,) = load_bundled(["NCT06954740"])
    assert p.criterion("exc-11").rule == {
        "has": {"concepts": "dialysis", "kinds": ["procedure", "condition"], "window": "ever"}
    }
    with pytest.raises(KeyError):
        p.criterion("exc-99")
    assert len(p.inclusion) + len(p.exclusion) == len(p.criteria)
