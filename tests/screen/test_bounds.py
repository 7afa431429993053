"""Results reported as bounds ("<0.3 mg/dL", "eGFR >90"): a rule is decided only when every
value the bound allows agrees (screen/bounds.py), in Python, in SQL and through the engine,
from a FHIR export with ``valueQuantity.comparator`` to the verdict."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Callable
from pathlib import Path

import duckdb
import orjson
import pytest
from storekit import AS_OF, crit, lab, person, protocol

from trialsieve.ingest.runner import run_ingest
from trialsieve.kidney.egfr import egfr
from trialsieve.screen.bounds import COMPARATORS, compare_sql, decide
from trialsieve.screen.compile import _extreme_of_bounds
from trialsieve.screen.engine import screen_store

MakeStore = Callable[[list[dict], list[dict]], Path]
OPERATORS = ("<", "<=", ">", ">=", "=")
GRID = (1.0, 2.0, 3.0)
#: candidate true values: steps of 0.25 cover "strictly between" any two grid points
XS = [x / 4 for x in range(-4, 21)]
ALLOWS = {"<": lambda x, b: x < b, "<=": lambda x, b: x <= b,
          ">": lambda x, b: x > b, ">=": lambda x, b: x >= b}  # fmt: skip
HOLDS = {"<": lambda x, y: x < y, "<=": lambda x, y: x <= y, ">": lambda x, y: x > y,
         ">=": lambda x, y: x >= y, "=": lambda x, y: x == y}  # fmt: skip
BORN = dt.date(1970, 3, 15)


@pytest.mark.parametrize(("cmp", "op"), list(itertools.product(COMPARATORS, OPERATORS)))
def test_decided_exactly_when_every_allowed_value_agrees(cmp: str, op: str) -> None:
    for b, limit in itertools.product(GRID, GRID):
        outcomes = {HOLDS[op](x, limit) for x in XS if ALLOWS[cmp](x, b)}
        want = outcomes.pop() if len(outcomes) == 1 else None
        assert decide(b, cmp, op, limit) is want, (cmp, b, op, limit)
    assert decide(2.0, None, op, 2.0) is HOLDS[op](2.0, 2.0)  # an exact value


def test_sql_equals_python() -> None:
    cases = list(itertools.product([*COMPARATORS, None], OPERATORS, GRID, GRID))
    con = duckdb.connect()
    for cmp, op, b, limit in cases:
        got = con.execute(
            f"SELECT {compare_sql('v', 'c', op, 'l')} FROM (SELECT ? AS v, ? AS c, ? AS l)",
            [b, cmp, limit],
        ).fetchone()
        assert got is not None and got[0] is decide(b, cmp, op, limit), (cmp, op, b, limit)


def _verdict(make_store: MakeStore, rule: dict, events: list[dict]) -> dict:
    store = make_store([person("p", BORN)], events)
    run = screen_store(store, [protocol([crit("inc-1", rule)])], AS_OF)
    return run.records[0]["criteria"][0]


def _bound(text: str, **kw: object) -> dict:
    """An HbA1c result reported as ``text`` (">10"): the bound is the value."""
    row = lab("p", "hba1c", float(text.lstrip("<>=")), "%", days_ago=3, **kw)
    return {**row, "value_text": text}


@pytest.mark.parametrize(
    ("reported", "verdict"),
    [("10", "met"), (">10", "met"), (">=9", "unknown"), (">8", "unknown"), ("<9", "not_met"),
     ("<=9", "not_met"), ("<=9.5", "unknown")],
)  # fmt: skip
def test_lab_rule_reads_a_bound(make_store: MakeStore, reported: str, verdict: str) -> None:
    rule = {"lab": {"analyte": "hba1c", "window": {"days": 30}, "op": ">", "value": 9,
                    "unit": "%"}}  # fmt: skip
    row = _bound(reported) if reported[0] in "<>" else lab("p", "hba1c", 10.0, "%", days_ago=3)
    got = _verdict(make_store, rule, [row])
    assert got["verdict"] == verdict
    if reported[0] in "<>":
        cmp = reported.rstrip("0123456789.")
        assert f"latest hba1c {cmp}{float(reported[len(cmp) :]):.2f} % on" in got["reason"]
        assert got["evidence"][0]["note"] == f"reported as {reported}"
    else:
        assert got["evidence"][0]["note"] is None


def test_every_with_an_open_bound_is_unknown(make_store: MakeStore) -> None:
    rule = {"lab": {"analyte": "hba1c", "window": {"days": 30}, "agg": "every", "op": "<",
                    "value": 9, "unit": "%"}}  # fmt: skip
    exact = lab("p", "hba1c", 7.0, "%", days_ago=10)
    assert _verdict(make_store, rule, [exact, _bound("<8")])["verdict"] == "met"
    assert _verdict(make_store, rule, [exact, _bound(">8")])["verdict"] == "unknown"
    assert _verdict(make_store, rule, [exact, _bound(">9")])["verdict"] == "not_met"
    got = _verdict(make_store, rule, [exact, _bound(">8")])
    assert got["reason"] == "1 of 2 values meet < 9 %; 1 reported as bounds that leave it open"


@pytest.mark.parametrize("agg", ["every", "any"])
def test_only_open_bounds_are_unknown(make_store: MakeStore, agg: str) -> None:
    """Every result a bound that leaves the rule open: unknown for both aggregations (count_if
    of nothing but NULLs is NULL on DuckDB, 0 on Spark: both count 0 here)."""
    rule = {"lab": {"analyte": "hba1c", "window": {"days": 30}, "agg": agg, "op": ">=",
                    "value": 9, "unit": "%"}}  # fmt: skip
    got = _verdict(make_store, rule, [_bound(">8"), _bound("<10")])
    assert got["verdict"] == "unknown"
    meets = "0 of 2 values meet" if agg == "every" else "none of 2 values meets"
    assert got["reason"] == f"{meets} >= 9 %; 2 reported as bounds that leave it open"


def test_min_and_max_rules_read_the_bounds(make_store: MakeStore) -> None:
    """The lowest reported number is not the minimum when a "<b" is among the results."""

    def rule(agg: str, op: str, value: float) -> dict:
        return {"lab": {"analyte": "hba1c", "window": {"days": 30}, "agg": agg, "op": op,
                        "value": value, "unit": "%"}}  # fmt: skip

    five = lab("p", "hba1c", 5.0, "%", days_ago=10)
    seven = lab("p", "hba1c", 7.0, "%", days_ago=10)
    assert _verdict(make_store, rule("min", "<", 3), [five])["verdict"] == "not_met"
    assert _verdict(make_store, rule("min", "<", 3), [five, _bound("<6")])["verdict"] == "unknown"
    assert _verdict(make_store, rule("min", "<", 6), [seven, _bound("<6")])["verdict"] == "met"
    assert _verdict(make_store, rule("min", ">", 4), [five, _bound(">6")])["verdict"] == "met"
    assert _verdict(make_store, rule("max", ">", 9), [seven, _bound(">6")])["verdict"] == "unknown"
    got = _verdict(make_store, rule("max", "<", 8), [seven, _bound("<6")])
    assert got["verdict"] == "met"
    assert got["reason"].startswith("max hba1c 7.00 % on ")


@pytest.mark.parametrize("agg", ["min", "max"])
def test_extreme_of_bounds_equals_brute_force(agg: str) -> None:
    """min/max over results some of which are bounds: decided exactly when every set of true
    values the results allow gives the same answer (all pairs of results on a grid)."""
    kinds = [(c, b) for c in (None, *COMPARATORS) for b in GRID]
    pairs = [[x] for x in kinds] + [[x, y] for x in kinds for y in kinds]
    rows = [(i, b, c) for i, pair in enumerate(pairs) for c, b in pair]
    con = duckdb.connect()
    con.execute("CREATE TABLE r AS SELECT * FROM (VALUES " + ", ".join(
        f"('{i}', {b}, {'NULL' if c is None else repr(c)})" for i, b, c in rows
    ) + ") t(patient_id, val, cmp)")  # fmt: skip
    pick = min if agg == "min" else max
    for op, limit in itertools.product(OPERATORS, GRID):
        cte, verdict = _extreme_of_bounds(agg, op)
        # k: the result shown (its limit; its verdict is used only without bounds)
        got = dict(con.execute(
            f"WITH r AS (SELECT * FROM r){cte}, "
            f"k AS (SELECT patient_id, {limit} AS lim, {agg}(val) {op} {limit} AS pass "
            f"FROM r GROUP BY patient_id) "
            f"SELECT x.patient_id, {verdict} FROM x JOIN k ON k.patient_id = x.patient_id"
        ).fetchall())  # fmt: skip
        for i, pair in enumerate(pairs):
            allowed = [[x for x in XS if c is None and x == b or c and ALLOWS[c](x, b)]
                       for c, b in pair]  # fmt: skip
            outcomes = {HOLDS[op](pick(xs), limit) for xs in itertools.product(*allowed)}
            want = outcomes.pop() if len(outcomes) == 1 else None
            assert got[str(i)] is want, (agg, pair, op, limit)


def test_egfr_of_a_creatinine_bound_is_the_opposite_bound(make_store: MakeStore) -> None:
    """ "<0.3 mg/dL" creatinine: eGFR at least that of 0.3 mg/dL (it falls as creatinine
    rises); ">10 mg/dL": at most that of 10 mg/dL."""
    age = 56  # on AS_OF, born 1970-03-15
    low = float(egfr("ckd-epi-2021", 0.3, age, True))  # ~126 (unrounded)
    high = float(egfr("ckd-epi-2021", 10.0, age, True))  # ~4

    def creat(text: str) -> dict:
        row = lab("p", "creatinine", float(text[1:]) * 88.4, "umol/L", days_ago=2)
        return {**row, "value_text": text}

    def rule(op: str, value: float) -> dict:
        return {"egfr": {"equation": "ckd-epi-2021", "window": {"days": 90}, "op": op,
                         "value": value}}  # fmt: skip

    assert _verdict(make_store, rule(">=", 15), [creat("<0.3")])["verdict"] == "met"
    assert _verdict(make_store, rule("<", 60), [creat("<0.3")])["verdict"] == "not_met"
    assert _verdict(make_store, rule(">", low - 0.5), [creat("<0.3")])["verdict"] == "met"
    assert _verdict(make_store, rule(">", low + 0.5), [creat("<0.3")])["verdict"] == "unknown"
    assert _verdict(make_store, rule(">=", 15), [creat(">10")])["verdict"] == "not_met"
    assert _verdict(make_store, rule("<", high - 0.5), [creat(">10")])["verdict"] == "unknown"
    got = _verdict(make_store, rule("<", high + 0.5), [creat(">10")])
    assert got["verdict"] == "met"
    shown = re.search(r"latest eGFR <=(\d+\.\d\d) mL/min/1.73m2", got["reason"])
    assert shown and float(shown.group(1)) == pytest.approx(high, abs=0.005)
    assert got["evidence"][0]["note"].endswith("; creatinine reported as >10")


def test_aki_rule_reads_a_creatinine_bound(make_store: MakeStore) -> None:
    """KDIGO staging in screening (kidney.aki, bounds): "<100" after 50 may be no rise at all;
    ">100" is at least a doubling (stage 2), and its evidence says how it was reported."""
    rule = {"aki": {"condition": {"kdigo_stage": {"min": 1}}, "onset_within": {"days": 7}}}

    def creat(value: float, days_ago: float, text: str | None = None) -> dict:
        row = lab("p", "creatinine", value, "umol/L", days_ago=days_ago)
        return {**row, "value_text": text} if text else row

    base = creat(50.0, 3)
    assert _verdict(make_store, rule, [base, creat(100.0, 2)])["verdict"] == "met"
    below = _verdict(make_store, rule, [base, creat(100.0, 2, "<100")])
    assert below["verdict"] == "not_met"
    above = _verdict(make_store, rule, [base, creat(100.0, 2, ">100")])
    assert above["verdict"] == "met" and "(stage 2)" in above["reason"]
    assert above["evidence"][0]["note"].endswith("; reported as >100")
    # a baseline reported as ">40" may be far higher than 40: no AKI read from it
    first = creat(40.0, 3, ">40")
    assert _verdict(make_store, rule, [first, creat(100.0, 2)])["verdict"] == "not_met"


def test_pre_aki_egfr_of_a_baseline_from_a_bound(make_store: MakeStore) -> None:
    """A baseline taken from "<50" umol/L is at most 50, so its eGFR is at least that of 50."""
    age = 56  # on AS_OF, born 1970-03-15
    at_50 = float(egfr("ckd-epi-2021", 50 / 88.4, age, True))  # ~108

    def rule(op: str, value: float) -> dict:
        return {"egfr": {"equation": "ckd-epi-2021", "from": "aki_baseline", "op": op,
                         "value": value}}  # fmt: skip

    def events(text: str | None) -> list[dict]:
        first = lab("p", "creatinine", 50.0, "umol/L", days_ago=5)
        rise = lab("p", "creatinine", 120.0, "umol/L", days_ago=2)  # ratio 2.4: stage 2
        return [{**first, "value_text": text} if text else first, rise]

    exact, bound = events(None), events("<50")
    assert _verdict(make_store, rule(">", at_50 + 5), exact)["verdict"] == "not_met"
    assert _verdict(make_store, rule(">", at_50 + 5), bound)["verdict"] == "unknown"
    assert _verdict(make_store, rule(">=", 60), bound)["verdict"] == "met"
    got = _verdict(make_store, rule("<", 60), bound)
    assert got["verdict"] == "not_met"
    assert "latest pre-AKI eGFR >=" in got["reason"]
    assert "reported below a bound" in got["evidence"][0]["note"]
    assert "reported below" not in _verdict(make_store, rule("<", 60), exact)["evidence"][0]["note"]


def test_fhir_comparator_reaches_the_verdict(tmp_path: Path) -> None:
    """A lab-reported eGFR of ">90" (FHIR valueQuantity.comparator) meets ">= 60" and leaves
    "> 100" open."""
    src = tmp_path / "src"
    src.mkdir()
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1970-03-15",
               "gender": "female"}  # fmt: skip
    obs = {"resourceType": "Observation", "id": "o1", "status": "final",
           "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-05-30",
           "code": {"coding": [{"system": "http://loinc.org", "code": "33914-3"}]},
           "valueQuantity": {"value": 90, "comparator": ">",
                             "unit": "mL/min/{1.73_m2}"}}  # fmt: skip
    (src / "Patient.ndjson").write_bytes(orjson.dumps(patient) + b"\n")
    (src / "Observation.ndjson").write_bytes(orjson.dumps(obs) + b"\n")
    assert run_ingest("fhir", src, tmp_path / "store").balanced()

    def verdict(op: str, value: float) -> str:
        rule = {"lab": {"analyte": "egfr_reported", "window": {"days": 30}, "op": op,
                        "value": value}}  # fmt: skip
        run = screen_store(tmp_path / "store", [protocol([crit("inc-1", rule)])], AS_OF)
        return str(run.records[0]["criteria"][0]["verdict"])

    assert verdict(">=", 60) == "met"
    assert verdict("<", 45) == "not_met"
    assert verdict(">", 100) == "unknown"
