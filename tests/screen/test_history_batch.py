"""The coded-history rules of all trials are evaluated in one pass over the events
(``Compiler.evaluate_history``): each request's rows, and its groups, equal the same rule
evaluated alone, row by row (concept predicate, timing and route on every event), on the demo
cohort; so do the medications of the exposure rules."""

from __future__ import annotations

from trialsieve.demo.cohort import DEMO_AS_OF
from trialsieve.protocols.loader import load_bundled
from trialsieve.screen.backend import DuckDBBackend
from trialsieve.screen.compile import (
    _EXPOSURE_END,
    _HISTORY_AGGS,
    _HISTORY_ROW,
    Compiler,
    RunShared,
    criterion_rules,
)
from trialsieve.screen.kidney_tables import KidneyTables


def test_one_pass_equals_each_rule_alone(demo_backend: DuckDBBackend) -> None:
    backend = demo_backend
    run = RunShared(KidneyTables(backend, DEMO_AS_OF))
    history = run.history
    requests = []
    for proto in load_bundled():
        comp = Compiler(backend, DEMO_AS_OF, proto.concept_sets, None, run)
        requests += comp.history_requests(r for c in proto.criteria for r in criterion_rules(c))
    assert len({r.key for r in requests}) >= 40  # the bundled protocols' has/count rules
    exposures = [r for r in requests if _EXPOSURE_END in r.cond]
    assert len(exposures) == 2  # the two exposure_days rules (glucocorticoids and others)
    comp.evaluate_history(requests)
    tables = {(h.groups, h.rows) for h in history.values()}
    assert len(tables) == 1 and len(history) == len({r.key for r in requests})
    aggs = ", ".join(f"{a.many} AS {a.name}" for a in _HISTORY_AGGS)
    n_hits = n_exposed = 0
    for req in requests:
        groups, rows, k = history[req.key]
        kinds = ", ".join(f"'{x}'" for x in req.kinds)
        alone = (
            f"SELECT {_HISTORY_ROW}, e.end_time FROM events e "
            f"WHERE e.kind IN ({kinds}) AND {req.pred} AND {req.cond}"
        )
        got_rows = f"SELECT * EXCLUDE (k) FROM {rows} WHERE k = {k}"
        differing = (
            f"(({got_rows}) EXCEPT ALL ({alone})) UNION ALL (({alone}) EXCEPT ALL ({got_rows}))"
        )
        assert backend.rows(f"SELECT count(*) FROM ({differing})") == [(0,)], req
        got = backend.rows(f"SELECT * EXCLUDE (k) FROM {groups} WHERE k = {k} ORDER BY 1")
        # each rule alone, grouped by patient (the pass answers groups of one row ungrouped)
        want = backend.rows(
            f"SELECT patient_id, {aggs} FROM ({alone}) GROUP BY patient_id ORDER BY 1"
        )
        assert got == want, req
        n_hits += len(got)
        n_exposed += len(got) if req in exposures else 0
    assert n_hits > 300  # the cohort has records for many of the rules
    assert n_exposed > 5  # and patients exposed to the drugs the exposure rules add up
    # a request evaluated again (another trial states it identically) is not re-evaluated
    comp.evaluate_history(requests[:3])
    assert {(h.groups, h.rows) for h in history.values()} == tables
