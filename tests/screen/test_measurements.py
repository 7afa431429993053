"""Every lab and eGFR rule selects its results from one table made in one pass over the events
(``Compiler.select_measurements``): on the demo cohort, the rows each rule of the bundled
protocols selects from it equal the rows it selects from the events, also for the analytes that
several rules read in different windows. The has rules of analytes (``Presence``) count their
events from it too."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from statements import Created
from storekit import AS_OF, crit, ev, lab, person, protocol

from trialsieve.demo.cohort import DEMO_AS_OF, build_demo_store
from trialsieve.protocols.loader import load_bundled
from trialsieve.screen.backend import DuckDBBackend
from trialsieve.screen.compile import MEASUREMENTS, Compiler, Measure, criterion_rules
from trialsieve.screen.engine import screen_store

BORN = dt.date(1970, 3, 15)
#: a has rule of an analyte (a presence rule) and a lab rule of the same analyte and window
HBV_HAS = {"has": {"concepts": {"analytes": ["hbv_dna"]}, "kinds": ["lab"],
                   "window": {"years": 1}}}  # fmt: skip
HBV_LAB = {"lab": {"analyte": "hbv_dna", "window": {"years": 1}, "agg": "latest", "op": ">",
                   "value": 20}}  # fmt: skip


def _differing_rows(backend: DuckDBBackend, a: str, b: str) -> int:
    """Rows of ``a`` not in ``b`` and of ``b`` not in ``a`` (as multisets)."""
    sql = f"SELECT count(*) FROM (({a} EXCEPT ALL {b}) UNION ALL ({b} EXCEPT ALL {a}))"
    return int(backend.rows(sql)[0][0])


def _assert_same_rows(backend: DuckDBBackend, measures: list[Measure]) -> int:
    """Each measure's rows from the table equal its rows from the events; return their count."""
    n_rows = 0
    for m in measures:
        from_events = m.rows.replace(MEASUREMENTS, "events")
        assert from_events != m.rows
        assert _differing_rows(backend, m.rows, from_events) == 0, m.rule_text
        n_rows += int(backend.rows(f"SELECT count(*) FROM ({m.rows})")[0][0])
    return n_rows


def test_each_rule_selects_the_rows_it_selects_from_the_events(
    demo_backend: DuckDBBackend,
) -> None:
    backend = demo_backend
    measures: list[Measure] = []
    for proto in load_bundled():
        comp = Compiler(backend, DEMO_AS_OF, proto.concept_sets)
        measures += comp.measurements(r for c in proto.criteria for r in criterion_rules(c))
    windows = defaultdict(set)
    for m in measures:
        windows[m.analyte].add(m.window)
    assert len(windows) >= 15  # the bundled protocols' analytes
    assert {"hemoglobin", "uacr"} <= {a for a, w in windows.items() if len(w) > 1}
    comp.select_measurements(measures)
    assert _assert_same_rows(backend, measures) > 1000  # results for many of the rules
    # the windows cut: results older than every window of their analyte are not selected
    names = ", ".join(f"'{a}'" for a in windows)
    kept = backend.rows(f"SELECT count(*) FROM {MEASUREMENTS}")[0][0]
    all_results = backend.rows(
        f"SELECT count(*) FROM events WHERE analyte IN ({names}) AND value IS NOT NULL"
    )[0][0]
    assert 0 < kept < all_results


def test_a_rule_over_the_whole_history_keeps_all_of_its_analyte(
    demo_backend: DuckDBBackend,
) -> None:
    """A window of "ever" (no far edge) beside a window of days on the same analyte."""
    backend = demo_backend
    comp = Compiler(backend, DEMO_AS_OF, {})
    rules = [
        {"lab": {"analyte": "creatinine", "op": ">", "value": 100, "window": "ever"}},
        {"egfr": {"op": "<", "value": 60, "window": {"days": 30}}},
        {"lab": {"analyte": "platelets", "op": "<", "value": 100, "window": {"days": 7}}},
    ]
    measures = comp.measurements(rules)
    assert [m.analyte for m in measures] == ["creatinine", "creatinine", "platelets"]
    comp.select_measurements(measures)
    assert _assert_same_rows(backend, measures) > 100
    kept = dict(backend.rows(f"SELECT analyte, count(*) FROM {MEASUREMENTS} GROUP BY analyte"))
    everything = dict(
        backend.rows(
            "SELECT analyte, count(*) FROM events WHERE analyte IN ('creatinine', 'platelets') "
            f"AND value IS NOT NULL AND start_time <= TIMESTAMP '{DEMO_AS_OF}' GROUP BY analyte"
        )
    )
    assert kept["creatinine"] == everything["creatinine"]
    assert 0 < kept["platelets"] < everything["platelets"]


def test_presence_rules_read_the_table_with_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundled has rules of analytes (LVEF, HBV DNA, HCV RNA) count their events from the
    measurements table: on the demo cohort the records equal those of the rules reading the
    events."""
    store = tmp_path / "demo"
    build_demo_store(store, n_patients=300)
    protos = load_bundled()
    backend = DuckDBBackend()
    presences = [
        q for p in protos
        for q in Compiler(backend, DEMO_AS_OF, p.concept_sets).presences(
            r for c in p.criteria for r in criterion_rules(c))
    ]  # fmt: skip
    assert {a for q in presences for a in q.analytes} >= {"lvef", "hbv_dna", "hcv_rna"}
    from_table = screen_store(store, protos, DEMO_AS_OF).records
    monkeypatch.setattr(Compiler, "presences", lambda self, rules: [])
    from_events = screen_store(store, protos, DEMO_AS_OF).records
    assert from_table == from_events
    assert any("record(s) of" in c["reason"] and "LVEF" in c["reason"]
               for r in from_table for c in r["criteria"])  # fmt: skip


def test_presence_counts_results_without_a_value(make_store: Callable[..., Path]) -> None:
    """A result without a number (reported as text) counts for a has rule of its analyte, and
    is not a value for a lab rule of the same analyte and window."""
    store = make_store(
        [person("text", BORN), person("number", BORN)],
        [ev("text", "lab", analyte="hbv_dna", value=None, value_text="not detected",
            code_system="http://loinc.org", code="42595-9", display="HBV DNA"),
         lab("number", "hbv_dna", 25.0, "IU/mL")],
    )  # fmt: skip
    run = screen_store(store, [protocol([crit("exc-1", HBV_HAS), crit("exc-2", HBV_LAB)])], AS_OF)
    got = {r["patient_id"]: {c["id"]: c for c in r["criteria"]} for r in run.records}
    assert got["text"]["exc-1"]["verdict"] == "met"
    assert got["text"]["exc-1"]["reason"].startswith("1 record(s) of listed codes")
    assert got["text"]["exc-1"]["evidence"][0]["note"] == "HBV DNA"
    assert got["text"]["exc-2"]["verdict"] == "unknown"  # no value: open world
    assert got["number"]["exc-1"]["verdict"] == "met"
    assert got["number"]["exc-2"]["verdict"] == "met"


def test_presence_rules_do_not_read_the_events_again(
    make_store: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, created: Created
) -> None:
    """A has rule of an analyte reads its events from the measurements table: the events of
    its analyte are read once, by the pass that fills the table (twice when the rule reads
    them itself)."""
    store = make_store([person("p", BORN)], [lab("p", "hbv_dna", 25.0, "IU/mL")])
    proto = protocol([crit("exc-1", HBV_HAS), crit("exc-2", HBV_LAB)])

    def event_reads() -> int:
        created.clear()
        records = screen_store(store, [proto], AS_OF).records
        assert [c["verdict"] for c in records[0]["criteria"]] == ["met", "met"]
        return created.event_reads("hbv_dna")

    assert event_reads() == 1
    monkeypatch.setattr(Compiler, "presences", lambda self, rules: [])
    assert event_reads() == 2
