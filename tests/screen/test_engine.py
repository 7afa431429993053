"""The screening engine on hand-built stores: verdicts, Kleene logic, windows, units, evidence."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from storekit import AS_OF, cond, crit, lab, med, person, protocol

from trialsieve.kidney.egfr import egfr
from trialsieve.screen.engine import screen_store

MakeStore = Callable[[list[dict], list[dict]], Path]

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
BORN = dt.date(1970, 3, 15)


def verdicts(store: Path, proto: Any, **kw: Any) -> dict[str, dict[str, dict]]:
    """patient -> criterion id -> criterion result."""
    run = screen_store(store, [proto], AS_OF, **kw)
    return {r["patient_id"]: {c["id"]: c for c in r["criteria"]} for r in run.records}


def one(make_store: MakeStore, rule: dict, events: list[dict], **proto_kw: Any) -> dict:
    store = make_store([person("p", BORN)], events)
    return verdicts(store, protocol([crit("exc-1", rule)], **proto_kw))["p"]["exc-1"]


@pytest.mark.parametrize(
    ("birth", "verdict"),
    [
        (dt.date(2008, 6, 1), "met"),  # 18th birthday on the screening day
        (dt.date(2008, 6, 2), "not_met"),  # 17 until tomorrow
        (dt.date(1950, 6, 2), "met"),  # 75, turns 76 tomorrow
        (dt.date(1950, 6, 1), "not_met"),  # 76 today
        (None, "unknown"),
    ],
)
def test_age_bounds_inclusive(make_store: MakeStore, birth: dt.date | None, verdict: str) -> None:
    store = make_store([person("p", birth)], [])
    got = verdicts(store, protocol([crit("inc-1", {"age": {"min": 18, "max": 75}})]))
    assert got["p"]["inc-1"]["verdict"] == verdict


@pytest.mark.parametrize(
    ("value", "unit", "verdict"),
    [(50.0, "10*9/L", "not_met"), (49.9, "10*9/L", "met"), (49_000.0, "/uL", "met")],
)
def test_platelets_threshold_in_per_microlitre(
    make_store: MakeStore, value: float, unit: str, verdict: str
) -> None:
    from trialsieve.units import to_canonical

    v = to_canonical("platelets", value, unit)
    rule = {"lab": {"analyte": "platelets", "window": {"days": 7}, "agg": "latest", "op": "<",
                    "value": 50_000, "unit": "/uL"}}  # fmt: skip
    got = one(make_store, rule, [lab("p", "platelets", v, "10*9/L", days_ago=2)])
    assert got["verdict"] == verdict
    assert got["evidence"][0]["value"] == pytest.approx(v)


def test_lab_open_world_and_window_edge(make_store: MakeStore) -> None:
    rule = {"lab": {"analyte": "hba1c", "window": {"days": 30}, "agg": "latest", "op": ">",
                    "value": 9, "unit": "%"}}  # fmt: skip
    assert one(make_store, rule, [])["verdict"] == "unknown"
    # exactly 30 days before is inside the window; 9 % is not > 9 %
    assert one(make_store, rule, [lab("p", "hba1c", 9.0, "%", days_ago=30)])["verdict"] == (
        "not_met"
    )
    assert one(make_store, rule, [lab("p", "hba1c", 9.1, "%", days_ago=30.01)])["verdict"] == (
        "unknown"
    )
    # latest wins over an older higher value; IFCC mmol/mol converted at ingestion
    rows = [lab("p", "hba1c", 10.0, "%", days_ago=20), lab("p", "hba1c", 8.0, "%", days_ago=3)]
    assert one(make_store, rule, rows)["verdict"] == "not_met"
    rows = [lab("p", "hba1c", 8.0, "%", days_ago=20), lab("p", "hba1c", 10.0, "%", days_ago=3)]
    got = one(make_store, rule, rows)
    assert got["verdict"] == "met"
    assert got["evidence"][0]["source"] == rows[1]["source"]


@pytest.mark.parametrize("agg", ["latest", "max"])
def test_results_of_the_same_instant_are_told_apart_by_their_evidence(
    make_store: MakeStore, agg: str
) -> None:
    """Two results charted at one instant (two sources): the rule shows the first by its
    evidence (source, code, value, unit, note, each descending: ``sql.tie_order``), whatever
    order they were stored in; for ``max`` only among equal values."""
    rule = {"lab": {"analyte": "potassium", "window": {"days": 30}, "agg": agg, "op": ">",
                    "value": 5.5, "unit": "mmol/L"}}  # fmt: skip
    at = AS_OF - dt.timedelta(days=2)
    same = 6.0 if agg == "max" else None
    rows = [
        lab("p", "potassium", same or 5.0, "mmol/L", start_time=at, source="lab/a"),
        lab("p", "potassium", same or 6.0, "mmol/L", start_time=at, source="lab/b"),
    ]
    for order in (rows, rows[::-1]):
        got = one(make_store, rule, order)
        assert got["evidence"][0]["source"] == "lab/b"
        assert got["verdict"] == "met"
    # the source decides before the value: "lab/b" with 5.0 is shown, not "lab/a" with 6.0
    if agg == "latest":
        rows = [
            lab("p", "potassium", 6.0, "mmol/L", start_time=at, source="lab/a"),
            lab("p", "potassium", 5.0, "mmol/L", start_time=at, source="lab/b"),
        ]
        got = one(make_store, rule, rows)
        assert (got["verdict"], got["evidence"][0]["value"]) == ("not_met", pytest.approx(5.0))


def test_every_value_in_window(make_store: MakeStore) -> None:
    rule = {"lab": {"analyte": "urine_protein_24h", "window": {"days": 90}, "agg": "every",
                    "op": ">=", "value": 3.5, "unit": "g/(24.h)"}}  # fmt: skip
    ok = [lab("p", "urine_protein_24h", x, "g/(24.h)", days_ago=d) for x, d in [(3.6, 80), (4, 5)]]
    assert one(make_store, rule, ok)["verdict"] == "met"
    bad = ok + [lab("p", "urine_protein_24h", 3.4, "g/(24.h)", days_ago=40)]
    got = one(make_store, rule, bad)
    assert got["verdict"] == "not_met"
    assert [e["value"] for e in got["evidence"]] == [pytest.approx(3.4)]


def test_uln_multiple_uses_reference_range_then_default(make_store: MakeStore) -> None:
    from trialsieve.units import default_uln

    rule = {"lab": {"analyte": "ast", "window": {"days": 30}, "agg": "latest", "op": ">",
                    "uln_multiple": 5}}  # fmt: skip
    with_range = lab("p", "ast", 201.0, "U/L", days_ago=1, ref_high=40.0)
    assert one(make_store, rule, [with_range])["verdict"] == "met"
    assert one(make_store, rule, [lab("p", "ast", 200.0, "U/L", ref_high=40.0)])["verdict"] == (
        "not_met"
    )
    uln = default_uln("ast")
    assert uln is not None
    assert one(make_store, rule, [lab("p", "ast", 5 * uln + 1, "U/L")])["verdict"] == "met"


def test_has_is_closed_world_with_icd_ranges(make_store: MakeStore) -> None:
    sets = {"malignancy": {"description": "malignant neoplasm", "codes": {"icd10cm": ["C00-C97"]},
                           "exclude": {"icd10cm": ["C44"]}}}  # fmt: skip
    rule = {"has": {"concepts": "malignancy", "window": {"years": 5}}}
    assert one(make_store, rule, [], concept_sets=sets)["verdict"] == "not_met"
    hit = cond("p", ICD10, "C34.11", days_ago=400)
    got = one(make_store, rule, [hit], concept_sets=sets)
    assert got["verdict"] == "met"
    assert got["evidence"][0]["source"] == hit["source"]
    assert got["evidence"][0]["code"] == f"{ICD10}|C34.11"
    skin = cond("p", ICD10, "C44.91", days_ago=10)
    assert one(make_store, rule, [skin], concept_sets=sets)["verdict"] == "not_met"
    old = cond("p", ICD10, "C50.9", days_ago=365.25 * 5 + 1)
    assert one(make_store, rule, [old], concept_sets=sets)["verdict"] == "not_met"
    d99 = cond("p", ICD10, "D09.0", days_ago=10)
    assert one(make_store, rule, [d99], concept_sets=sets)["verdict"] == "not_met"


@pytest.mark.parametrize(("days", "verdict"), [(7, "not_met"), (8, "met")])
def test_glucocorticoid_more_than_one_week(make_store: MakeStore, days: int, verdict: str) -> None:
    sets = {"gc": {"codes": {"atc": ["H02AB"]}}}
    rule = {"exposure_days": {"concepts": "gc", "window": {"days": 30}, "op": ">", "value": 7}}
    rows = [med("p", "H02AB07", 20, 20 - days)]
    assert one(make_store, rule, rows, concept_sets=sets)["verdict"] == verdict
    # two overlapping prescriptions are not counted twice
    rows = [med("p", "H02AB07", 20, 20 - days), med("p", "H02AB06", 19, 20 - days)]
    assert one(make_store, rule, rows, concept_sets=sets)["verdict"] == verdict
    # exposure before the window is clipped: 40..25 days ago leaves 5 days in the last 30
    assert (
        one(make_store, rule, [med("p", "H02AB07", 40, 25)], concept_sets=sets)["verdict"]
        == "not_met"
    )


def test_egfr_rule_matches_the_equation(make_store: MakeStore) -> None:
    scr = 150.0
    rule = {"egfr": {"equation": "ckd-epi-2021", "window": {"days": 90}, "agg": "latest",
                     "op": ">=", "value": 20}}  # fmt: skip
    got = one(make_store, rule, [lab("p", "creatinine", scr, "umol/L", days_ago=3)])
    age = 56  # born 1970-03-15, creatinine on 2026-05-29
    expected = egfr("ckd-epi-2021", scr / 88.4, age, True)
    assert got["evidence"][0]["value"] == round(float(expected), 2)
    assert got["verdict"] == "met"
    assert one(make_store, rule, [])["verdict"] == "unknown"


def test_kleene_logic_and_manual(make_store: MakeStore) -> None:
    unknown = {"lab": {"analyte": "hba1c", "window": {"days": 30}, "op": ">", "value": 9}}
    met = {"age": {"min": 18}}
    not_met = {"age": {"max": 18}}
    manual = {"manual": "ask the patient"}
    cases = [
        ({"any": [unknown, met]}, "met"),
        ({"any": [unknown, not_met]}, "unknown"),
        ({"all": [unknown, not_met]}, "not_met"),
        ({"all": [unknown, met]}, "unknown"),
        ({"not": unknown}, "unknown"),
        ({"not": not_met}, "met"),
        ({"any": [manual, not_met]}, "manual"),
        ({"any": [manual, unknown]}, "unknown"),
        ({"all": [manual, met]}, "manual"),
        ({"all": [manual, unknown]}, "unknown"),
    ]
    store = make_store([person("p", BORN)], [])
    proto = protocol([crit(f"inc-{i}", r) for i, (r, _) in enumerate(cases, 1)])
    got = verdicts(store, proto)["p"]
    assert [got[f"inc-{i}"]["verdict"] for i in range(1, len(cases) + 1)] == [v for _, v in cases]


def test_combined_reasons_for_patients_with_and_without_data(make_store: MakeStore) -> None:
    """Nodes hold rows only for patients with data; the others get each node's default.
    A combination must give both kinds of patient the same reasons as if every patient had
    a row: the reasons of the children that decide the verdict, in order."""
    sets = {"cancer": {"codes": {"icd10cm": ["C00-C97"]}}}
    hba1c = {"lab": {"analyte": "hba1c", "window": {"days": 30}, "op": ">", "value": 9,
                     "unit": "%"}}  # fmt: skip
    rule = {"any": [{"not": {"has": {"concepts": "cancer"}}}, hba1c]}
    store = make_store(
        [person("none", BORN), person("lab", BORN), person("both", BORN)],
        [lab("lab", "hba1c", 10.0, "%"), lab("both", "hba1c", 7.0, "%"),
         cond("both", ICD10, "C18.7", days_ago=100)],
    )  # fmt: skip
    got = verdicts(store, protocol([crit("inc-1", rule)], sets))
    none, with_lab, both = (got[p]["inc-1"] for p in ("none", "lab", "both"))
    assert none["verdict"] == "met"
    assert none["reason"] == "not: no record of cancer (ever)" and none["evidence"] == []
    assert with_lab["verdict"] == "met"
    assert with_lab["reason"].startswith("not: no record of cancer (ever); latest hba1c")
    assert both["verdict"] == "not_met"
    assert both["reason"].startswith("not: 1 record(s) of cancer (ever)")
    assert both["reason"].endswith("(rule: > 9 %)")
    assert [e["code"].split("|")[-1] for e in both["evidence"]][:1] == ["C18.7"]
    assert both["evidence"][1]["value"] == pytest.approx(7.0)


def test_combination_of_three_children_one_record_per_patient(make_store: MakeStore) -> None:
    """Patients with rows in different subsets of three children (the second and third only,
    the first and third only, one only, none) each get one record, decided by the children
    that have their data, in order."""
    sets = {"cancer": {"codes": {"icd10cm": ["C00-C97"]}},
            "ckd": {"codes": {"icd10cm": ["N18"]}}}  # fmt: skip
    hba1c = {"lab": {"analyte": "hba1c", "window": {"days": 30}, "op": ">", "value": 9,
                     "unit": "%"}}  # fmt: skip
    rule = {"any": [{"has": {"concepts": "cancer"}}, hba1c, {"has": {"concepts": "ckd"}}]}
    store = make_store(
        [person(p, BORN) for p in ("lab+ckd", "cancer+ckd", "lab", "ckd", "none")],
        [lab("lab+ckd", "hba1c", 7.0, "%"), cond("lab+ckd", ICD10, "N18.3", days_ago=50),
         cond("cancer+ckd", ICD10, "C18.7", days_ago=100),
         cond("cancer+ckd", ICD10, "N18.4", days_ago=20),
         lab("lab", "hba1c", 10.0, "%"), cond("ckd", ICD10, "N18.5", days_ago=10)],
    )  # fmt: skip
    run = screen_store(store, [protocol([crit("inc-1", rule)], sets)], AS_OF)
    records = run.records
    assert sorted(r["patient_id"] for r in records) == sorted(
        ["lab+ckd", "cancer+ckd", "lab", "ckd", "none"]
    )
    got = {r["patient_id"]: r["criteria"][0] for r in records}
    codes = {p: [e["code"].split("|")[-1] for e in c["evidence"]] for p, c in got.items()}
    assert {p: c["verdict"] for p, c in got.items()} == {
        "lab+ckd": "met", "cancer+ckd": "met", "lab": "met", "ckd": "met", "none": "unknown"
    }  # fmt: skip
    assert got["lab+ckd"]["reason"].startswith("1 record(s) of ckd (ever)")
    assert codes["lab+ckd"] == ["N18.3"]  # the hba1c (not met) does not decide
    assert got["cancer+ckd"]["reason"].startswith("1 record(s) of cancer (ever)")
    assert "; 1 record(s) of ckd (ever)" in got["cancer+ckd"]["reason"]
    assert codes["cancer+ckd"] == ["C18.7", "N18.4"]
    assert got["lab"]["reason"].startswith("latest hba1c 10.00 %")
    assert codes["ckd"] == ["N18.5"]
    assert got["none"]["reason"].startswith("no hba1c result") and codes["none"] == []


def test_status_funnel_and_single_patient_explanation(make_store: MakeStore) -> None:
    sets = {"malignancy": {"codes": {"icd10cm": ["C00-C97"]}}}
    proto = protocol(
        [
            crit("inc-1", {"age": {"min": 18, "max": 75}}),
            crit(
                "inc-2",
                {
                    "lab": {
                        "analyte": "hba1c",
                        "window": {"days": 90},
                        "op": "<=",
                        "value": 9,
                        "unit": "%",
                    }
                },
            ),  # fmt: skip
            crit("inc-3", manual="Signed informed consent"),
            crit("exc-1", {"has": {"concepts": "malignancy", "window": {"years": 5}}}),
        ],
        sets,
    )
    pats = [person("old", dt.date(1940, 1, 1)), person("cancer", BORN), person("nodata", BORN),
            person("ok", BORN), person("dead", BORN)]  # fmt: skip
    pats[-1]["deceased_date"] = dt.datetime(2026, 1, 1)
    pats.append(person("unborn", dt.date(2026, 7, 1)))  # born after the screening instant
    events = [
        lab("old", "hba1c", 7.0, "%"), lab("cancer", "hba1c", 7.0, "%"),
        cond("cancer", ICD10, "C18.7", days_ago=100), lab("ok", "hba1c", 9.0, "%"),
        lab("dead", "hba1c", 7.0, "%", days_ago=200),
    ]  # fmt: skip
    store = make_store(pats, events)
    run = screen_store(store, [proto], AS_OF)
    status = {r["patient_id"]: r["status"] for r in run.records}
    assert status == {"old": "ineligible", "cancer": "ineligible", "nodata": "needs_data",
                      "ok": "potentially_eligible"}  # fmt: skip
    f = run.funnels["T1"]
    assert f["screened"] == 4
    assert [(s["criterion_id"], s["excluded"], s["remaining"]) for s in f["steps"]] == [
        ("inc-1", 1, 3), ("inc-2", 0, 3), ("inc-3", 0, 3), ("exc-1", 1, 2)
    ]  # fmt: skip
    assert f["needs_data_by"] == {"inc-2": 1}
    assert f["potentially_eligible"] == 1
    assert f["per_criterion"][1] == {"id": "inc-2", "kind": "inclusion", "met": 3,
                                     "not_met": 0, "unknown": 1, "manual": 0}  # fmt: skip
    ok = next(r for r in run.records if r["patient_id"] == "ok")
    assert ok["criteria"][2]["verdict"] == "manual"
    assert ok["criteria"][2]["manual"] == "Signed informed consent"
    # explaining one patient runs the same rules and gives the same record
    single = screen_store(store, [proto], AS_OF, patient_ids=["ok"]).records
    assert single == [ok]


def test_exposure_days_count_intervals_that_clip_to_the_same_span_once(
    make_store: MakeStore,
) -> None:
    """Prescriptions running through the whole window clip to the same interval: their union
    is the window, however many there are and in whatever order they are read (the islands
    were once numbered in two passes that could order such ties differently, counting the
    window twice)."""
    sets = {"is": {"codes": {"atc": ["L04A"]}}}
    rule = {"exposure_days": {"concepts": "is", "window": {"days": 30}, "op": ">", "value": 30}}
    people = [person(f"p{i:02d}", BORN) for i in range(40)]
    rows = [
        med(p["patient_id"], f"L04AA{j:02d}", 60 + j, -5 - j)
        for p in people
        for j in (3, 1, 4, 1, 5, 9, 2, 6)
    ] + [med(p["patient_id"], "L04AD02", 90, 80) for p in people]  # an earlier, separate island
    store = make_store(people, rows)
    got = verdicts(store, protocol([crit("exc-1", rule)], concept_sets=sets))
    assert {p: v["exc-1"]["verdict"] for p, v in got.items()} == {
        p["patient_id"]: "not_met" for p in people
    }
    assert {v["exc-1"]["reason"].split(" day")[0] for v in got.values()} == {"30.00"}


def test_a_latest_result_several_rules_compare_is_picked_once(make_store: MakeStore) -> None:
    """Two trials' limits on the latest eGFR of the same 90 days (and a third rule on another
    window): the latest results are picked in one table both rules read, and each trial gets
    the verdicts it gets screened alone."""
    from trialsieve.screen.backend import DuckDBBackend

    class Recording(DuckDBBackend):
        def __init__(self) -> None:
            super().__init__()
            self.made: list[str] = []

        def create(self, name: str, select_sql: str) -> None:
            self.made.append(select_sql)
            super().create(name, select_sql)

    def egfr_rule(op: str, value: float, days: int = 90) -> dict:
        return {"egfr": {"window": {"days": days}, "op": op, "value": value}}

    people = [person(f"p{i}", BORN, sex="female" if i % 2 else "male") for i in range(6)]
    rows = [lab(f"p{i}", "creatinine", 50.0 + 40 * i, "umol/L", days_ago=2 + i) for i in range(5)]
    rows += [lab("p0", "creatinine", 400.0, "umol/L", days_ago=30)]  # earlier, not the latest
    store = make_store(people, rows)
    trials = [
        protocol([crit("inc-1", egfr_rule(">=", 60))], pid="A"),
        protocol(
            [crit("inc-1", egfr_rule("<", 90)), crit("inc-2", egfr_rule(">=", 15, 7))], pid="B"
        ),  # fmt: skip
    ]
    backend = Recording()
    both = screen_store(store, trials, AS_OF, backend=backend).records
    picks = [s for s in backend.made if s.startswith("SELECT * FROM (SELECT *, row_number()")]
    assert len(picks) == 1 and "'creatinine'" in picks[0]
    alone = [r for t in trials for r in screen_store(store, [t], AS_OF).records]
    key = lambda r: (r["trial_id"], r["patient_id"])  # noqa: E731
    assert sorted(both, key=key) == sorted(alone, key=key)
    verdicts_a = {
        r["patient_id"]: r["criteria"][0]["verdict"] for r in both if r["trial_id"] == "A"
    }
    assert set(verdicts_a.values()) == {"met", "not_met", "unknown"}
