"""Every lab and eGFR rule selects its results from one table made in one pass over the events
(``Compiler.select_measurements``): on the demo cohort, the rows each rule of the bundled
protocols selects from it equal the rows it selects from the events, also for the analytes that
several rules read in different windows."""

from __future__ import annotations

from collections import defaultdict

from trialsieve.demo.cohort import DEMO_AS_OF
from trialsieve.protocols.loader import load_bundled
from trialsieve.screen.backend import DuckDBBackend
from trialsieve.screen.compile import MEASUREMENTS, Compiler, Measure, criterion_rules


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
