"""Every lab and eGFR rule selects its results from one table made in one pass over the events
(``Compiler.select_measurements``): on the demo cohort, the rows each rule of the bundled
protocols selects from it equal the rows it selects from the events, also for the analytes that
several rules read in different windows."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from trialsieve.demo.cohort import DEMO_AS_OF, build_demo_store
from trialsieve.protocols.loader import load_bundled
from trialsieve.screen.backend import ALL_PATIENTS, DuckDBBackend
from trialsieve.screen.compile import MEASUREMENTS, Compiler, Measure, criterion_rules


def _differing_rows(backend: DuckDBBackend, a: str, b: str) -> int:
    """Rows of ``a`` not in ``b`` and of ``b`` not in ``a`` (as multisets)."""
    sql = f"SELECT count(*) FROM (({a} EXCEPT ALL {b}) UNION ALL ({b} EXCEPT ALL {a}))"
    return int(backend.rows(sql)[0][0])


def test_each_rule_selects_the_rows_it_selects_from_the_events(tmp_path: Path) -> None:
    build_demo_store(tmp_path / "store", n_patients=300)
    backend = DuckDBBackend()
    backend.open_store(tmp_path / "store")
    backend.load_events(ALL_PATIENTS)
    backend.create("pop", "SELECT patient_id, birth_date, sex, source FROM patients")
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
    n_rows = 0
    for m in measures:
        from_events = m.rows.replace(MEASUREMENTS, "events")
        assert from_events != m.rows
        assert _differing_rows(backend, m.rows, from_events) == 0, m.rule_text
        n_rows += int(backend.rows(f"SELECT count(*) FROM ({m.rows})")[0][0])
    assert n_rows > 1000  # the cohort has results for many of the rules
    # the windows cut: results older than every window of their analyte are not selected
    names = ", ".join(f"'{a}'" for a in windows)
    kept = backend.rows(f"SELECT count(*) FROM {MEASUREMENTS}")[0][0]
    all_results = backend.rows(
        f"SELECT count(*) FROM events WHERE analyte IN ({names}) AND value IS NOT NULL"
    )[0][0]
    assert 0 < kept < all_results
