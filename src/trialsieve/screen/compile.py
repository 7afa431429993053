"""Rule language -> SQL (docs/PROTOCOLS.md "Rule nodes").

Every node compiles to a :class:`Verdicts`: a temporary table with columns ``patient_id``, ``v``
(verdict code of ``screen.sql``: 3 met, 2 unknown, 1 manual, 0 not_met), ``reason`` and ``ev`` (a
list of evidence structs), plus a *default* verdict and reason for every screened patient without
a row (e.g. "no record of X" for coded history). Tables are sparse: a rule about dialysis holds
rows for the patients with dialysis records only, so the cost follows the data, not the
population times the number of rules. Leaves query the ``events`` view; composite nodes combine
their children with Kleene logic. The same tables answer for a million patients or, filtered to
one, explain a single verdict.

Open world (measurements, eGFR, AKI): no value in the window -> unknown.
Closed world (coded history: has, count, exposure_days): no code -> not_met.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from trialsieve import units
from trialsieve.kidney.aki import W365D_S
from trialsieve.kidney.egfr import EQUATIONS, egfr_sql, needs_cystatin
from trialsieve.screen import kidney_tables
from trialsieve.screen.backend import Backend
from trialsieve.screen.bounds import (
    EGFR_FROM_CREATININE,
    comparator_sql,
    compare_sql,
    mapped_comparator_sql,
    reported_as_sql,
)
from trialsieve.screen.concepts import analytes_only, concept_predicate
from trialsieve.screen.sql import (
    EMPTY_EV,
    MANUAL,
    MET,
    NOT_MET,
    OPS,
    UNKNOWN,
    Window,
    count_agg,
    ev_list,
    event_evidence,
    evidence_agg,
    evidence_struct,
    fmt_num,
    group_rows,
    latest_date_part,
    latest_text,
    latest_text_agg,
    latest_text_part,
    lit,
    parse_window,
    round_half_up,
    tie_order,
)
from trialsieve.sqltext import escape

#: eGFR is rounded to this many decimals before it is compared and reported: the verdict is
#: decided on the number the coordinator reads in the reason (19.996 shows as 20.00 and meets
#: ">= 20"), and last-bit differences of POWER between engines cannot flip a verdict
EGFR_DECIMALS = 2

DEFAULT_HAS_KINDS = ("condition", "procedure", "medication", "observation")

#: kinds whose concept-set rules are matched on the run's distinct codes
#: (:meth:`Compiler._accepted_codes`): few distinct codes, many rows; measurements (lab, vital,
#: output) keep the per-row predicate
CODED_KINDS = ("condition", "procedure", "medication", "observation", "encounter")

#: the run's measurement results (:meth:`Compiler.select_measurements`): every lab and eGFR rule
#: selects its results from this table, not from ``events``
MEASUREMENTS = "__measurements"
#: the columns of :data:`MEASUREMENTS` (what the lab and eGFR rules read, and the kind); with
#: ``display`` and ``end_time``, which only the presence rules read (:class:`Presence`)
_MEASUREMENT_COLUMNS = (
    "patient_id", "kind", "analyte", "code_system", "code", "start_time", "value", "unit",
    "value_text", "ref_low", "ref_high", "source",
)  # fmt: skip


#: join of events ``e`` to accepted codes ``m`` (:meth:`Compiler._accepted_codes`)
_CODE_KEYS = "m.kind = e.kind AND " + " AND ".join(
    f"m.{c} IS NOT DISTINCT FROM e.{c}" for c in ("code_system", "code", "analyte")
)
#: a coded-history row of event ``e`` and, aggregated per patient, what has/count report
_HISTORY_ROW = (
    f"e.patient_id, e.start_time, {event_evidence('e', 'COALESCE(e.display, e.code)')} AS ev1, "
    "COALESCE(e.display, e.code) AS what"
)
_HISTORY_AGGS = (
    count_agg("n"),
    evidence_agg("evs", "ev1", "start_time"),
    latest_text_agg("last", "start_time", "what"),
)
#: the key of the window of a rule node that stages creatinine: an aki rule's onset, an eGFR's
#: of the AKI baseline (``from: aki_baseline``)
_AKI_WINDOW_KEYS = {"aki": "onset_within", "egfr": "window"}
#: a medication's exposure end: a point event (no end, or end == start) counts one day
_EXPOSURE_END = (
    "CASE WHEN e.end_time IS NULL OR e.end_time <= e.start_time "
    "THEN e.start_time + INTERVAL 1 DAY ELSE e.end_time END"
)


@dataclass(frozen=True)
class HistoryRequest:
    """The events a has/count rule counts: ``kinds`` accepted by concept predicate ``pred``
    (over alias ``e``) where ``cond`` (timing, route) holds."""

    kinds: tuple[str, ...]
    pred: str
    cond: str

    @property
    def key(self) -> str:
        """Identity of the request (equal requests of several trials are evaluated once)."""
        return repr((self.kinds, self.pred, self.cond))


class HistoryRows(NamedTuple):
    """Where :meth:`Compiler.evaluate_history` put a request's answer: its groups (``k`` =
    ``k``) in ``groups``, its rows in ``rows``."""

    groups: str
    rows: str
    k: int


@dataclass(frozen=True)
class Presence:
    """A has/count rule of analytes: its concepts name analytes only, its kinds are not all
    coded (lab, vital or output among them) and include no medication. It counts the events
    of ``analytes`` in ``window``, with a value or not. The run selects them into
    :data:`MEASUREMENTS` with the results the lab rules read
    (:meth:`Compiler.select_measurements`), and the rule reads them there, not from the
    events."""

    analytes: tuple[str, ...]
    window: Window


def rule_nodes(rule: Any) -> Iterator[tuple[str, Any]]:
    """Every node of a rule tree as (kind, body), the tree's root first."""
    if not isinstance(rule, Mapping) or len(rule) != 1:
        return
    ((kind, body),) = rule.items()
    yield kind, body
    if kind in ("all", "any"):
        for child in body:
            yield from rule_nodes(child)
    elif kind == "not":
        yield from rule_nodes(body)


def criterion_rules(crit: Any) -> list[Any]:
    """The rule trees of a protocol criterion: its rule and the rules attached to a manual
    check as evidence."""
    return [r for r in [crit.rule, *(crit.evidence or [])] if r is not None]


class RuleError(ValueError):
    """A rule the compiler cannot translate (unknown node, bad field)."""


@dataclass(frozen=True)
class Verdicts:
    """A compiled node: relation ``name`` (patient_id, v, reason, ev; a table, or a subquery in
    parentheses) holds the patients whose verdict is not the default; every other screened
    patient has verdict ``v`` with ``reason`` and no evidence."""

    name: str
    v: int
    reason: str

    def column(self, alias: str, col: str) -> str:
        """SQL: column ``col`` (v, reason, ev) of this node for a LEFT JOIN aliased ``alias``."""
        default = {"v": str(self.v), "reason": lit(self.reason), "ev": EMPTY_EV}[col]
        return f"CASE WHEN {alias}.patient_id IS NULL THEN {default} ELSE {alias}.{col} END"


@dataclass(frozen=True)
class Measure:
    """A measurement rule (lab, eGFR) before aggregation: ``rows`` selects its results
    (patient_id, t, val, cmp, ev1 and what ``limit`` reads) of ``analyte`` in ``window``, ``cmp``
    the comparator when ``val`` is a reported bound (screen.bounds), else NULL; the rule is
    ``<agg>(val) op limit``, with ``limit`` SQL over the columns of ``rows``."""

    analyte: str
    window: Window
    rows: str
    limit: str
    op: str
    agg: str
    label: str
    unit: str
    rule_text: str
    missing: str
    #: which result ``agg: latest`` shows: the first by this order (then by its evidence)
    latest_order: str = "t DESC"

    def latest_sql(self) -> str:
        """Each patient's latest result (results of the same instant: by their evidence)."""
        return first_per_patient(self.rows, f"{self.latest_order}, {tie_order('ev1')}")

    def with_limit(self, rows: str) -> str:
        """SQL: ``rows`` (of :attr:`rows`) with the rule's limit as ``lim``."""
        return f"(SELECT *, {self.limit} AS lim FROM {rows})"


def first_per_patient(rows: str, order: str) -> str:
    """SQL: each patient's first row of ``rows`` by ``order`` (with its ``rn``, 1)."""
    return (
        "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY patient_id "
        f"ORDER BY {order}) AS rn FROM ({rows})) WHERE rn = 1"
    )


def events_of(kinds: Sequence[str]) -> str:
    """SQL relation: the events of ``kinds``, read kind by kind (UNION ALL). The store is
    clustered by kind, so reading one kind reads only its row groups; a filter on several
    kinds at once (``IN``, ``OR``) reads every row group between the first and the last (the
    lab results between conditions and procedures: 6x the rows the history rules count)."""
    return (
        "("
        + " UNION ALL ".join(
            f"SELECT * FROM events WHERE kind = {lit(k)}" for k in dict.fromkeys(kinds)
        )
        + ")"
    )


def left_joins(nodes: Sequence[Verdicts], on: str) -> str:
    """SQL: each node's table LEFT JOINed as ``c<i>`` on ``<on>.patient_id``; read its columns
    with :meth:`Verdicts.column`."""
    return " ".join(
        f"LEFT JOIN {n.name} c{i} ON c{i}.patient_id = {on}.patient_id" for i, n in enumerate(nodes)
    )


def any_patient(nodes: Sequence[Verdicts]) -> tuple[str, str]:
    """(SQL patient id, SQL FROM clause): the patients with a row in any of ``nodes``, each
    node joined as ``c<i>``; read a node's columns with :meth:`Verdicts.column`.

    The nodes are FULL OUTER JOINed, one join per further node. The distinct ids of all the
    nodes, LEFT JOINed to each node, cost one join and one grouping more (the run's ~60
    combinations of 1M patients: 3.5 -> 3.0 s)."""
    ids = [f"c{i}.patient_id" for i in range(len(nodes))]
    joins = [f"{nodes[0].name} c0"] + [
        f"FULL JOIN {n.name} c{i} ON c{i}.patient_id = "
        + (ids[0] if i == 1 else f"COALESCE({', '.join(ids[:i])})")
        for i, n in enumerate(nodes[1:], start=1)
    ]
    return (f"COALESCE({', '.join(ids)})" if len(ids) > 1 else ids[0]), " ".join(joins)


def kleene(how: str, vs: Sequence[int]) -> int:
    """Kleene AND (``all``) / OR (``any``) of verdict codes, as the SQL of ``_combine``."""
    if how == "any":
        return max(vs)
    if min(vs) == NOT_MET:
        return NOT_MET
    return UNKNOWN if UNKNOWN in vs else MANUAL if MANUAL in vs else MET


def age_years_sql(birth: str, at: str) -> str:
    """Whole years of age at ``at`` for birth date ``birth`` (birthday reached -> +1)."""
    return (
        f"(year({at}) - year({birth}) - CASE WHEN month({at}) * 100 + day({at}) "
        f"< month({birth}) * 100 + day({birth}) THEN 1 ELSE 0 END)"
    )


@dataclass
class RunShared:
    """What the compilers of one run (or part) share, so that what several trials state is made
    once."""

    #: creatinine staged once per strategy
    kidney: kidney_tables.KidneyTables
    #: SQL text -> table: a rule that several trials state identically (same codes, same
    #: window) is evaluated once
    memo: dict[str, str] = field(default_factory=dict)
    #: coded-history request -> where :meth:`Compiler.evaluate_history` put its answer
    history: dict[str, HistoryRows] = field(default_factory=dict)
    #: latest-result queries (:meth:`Measure.latest_sql`) that several rules compare, made once
    #: as a table (:meth:`Compiler.prepare_measurements`); the others stay subqueries
    shared_latest: set[str] = field(default_factory=set)
    #: the presence rules whose events :data:`MEASUREMENTS` holds (the others read the events)
    presences: set[Presence] = field(default_factory=set)


class Compiler:
    """Compiles the rules of one protocol into temp tables on a backend (DuckDB, Spark).

    ``concept_sets`` maps names to concept sets (protocol ``concept_sets``); ``settings`` are the
    protocol's settings (e.g. ``aki_lookback_days``); ``run`` what the compilers of the run's
    other protocols share with it (a run of its own when None).
    """

    _ids = itertools.count()

    def __init__(
        self,
        backend: Backend,
        as_of: dt.datetime,
        concept_sets: Mapping[str, Any],
        settings: Mapping[str, Any] | None = None,
        run: RunShared | None = None,
    ) -> None:
        self.backend = backend
        self.as_of = as_of
        self.T = lit(as_of)
        self.concept_sets = concept_sets
        self.settings = dict(settings or {})
        self.run = run or RunShared(kidney_tables.KidneyTables(backend, as_of))

    # -- plumbing ---------------------------------------------------------------------------
    def table(self, select_sql: str) -> str:
        """Materialise ``select_sql`` as a node table (once per run for the same SQL)."""
        name = self.run.memo.get(select_sql)
        if name is None:
            name = f"__n{next(self._ids)}"
            self.backend.create(name, select_sql)
            self.run.memo[select_sql] = name
        return name

    def _finish(
        self,
        agg_sql: str,
        v: str,
        reason: str,
        ev: str,
        default: int,
        why: str,
        *,
        table: bool = True,
    ) -> Verdicts:
        """Verdicts from per-patient aggregate ``a``; patients absent get ``default``/``why``.
        With ``table=False`` the node is its query (a subquery its readers inline), not a
        table."""
        sql = f"SELECT a.patient_id, {v} AS v, {reason} AS reason, {ev} AS ev FROM ({agg_sql}) a"
        return Verdicts(self.table(sql) if table else f"({sql})", default, why)

    def no_rows(self, v: int, reason: str) -> Verdicts:
        """A node that is ``v``/``reason`` for every patient (an empty table)."""
        return Verdicts(
            self.table(
                "SELECT patient_id, 0 AS v, CAST(NULL AS VARCHAR) AS reason, "
                f"{EMPTY_EV} AS ev FROM pop WHERE FALSE"
            ),
            v,
            reason,
        )

    def concept(self, spec: Any) -> tuple[str, str]:
        """(SQL predicate, label) for a concept-set name or inline set."""
        if isinstance(spec, str):
            if spec not in self.concept_sets:
                raise RuleError(f"unknown concept set {spec!r}")
            cs = self.concept_sets[spec]
            desc = getattr(cs, "description", "") or spec
            return concept_predicate(cs, "e"), desc
        if isinstance(spec, Mapping):
            return concept_predicate(spec, "e"), str(spec.get("description", "listed codes"))
        raise RuleError(f"bad concepts {spec!r}")

    def _accepted_codes(self, pred: str, kinds: Sequence[str]) -> str:
        """SELECT of the run's distinct coded (kind, system, code, analyte) of ``kinds`` that
        concept predicate ``pred`` accepts (the distinct codes: one shared table).

        The predicate (often dozens of LIKEs) depends only on kind, code system, code and
        analyte, so it is evaluated once per distinct code of the run, and the events are
        joined to the codes it accepts (:data:`_CODE_KEYS`, :meth:`evaluate_history`): the same
        rows, without evaluating it on every event."""
        codes = self.table(
            f"SELECT DISTINCT kind, code_system, code, analyte FROM {events_of(CODED_KINDS)}"
        )
        kinds_sql = ", ".join(lit(k) for k in kinds)
        return f"SELECT * FROM {codes} e WHERE e.kind IN ({kinds_sql}) AND {pred}"

    # -- entry point --------------------------------------------------------------------------
    def node(self, rule: Mapping[str, Any]) -> Verdicts:
        """Compile one rule node into its verdict table."""
        if not isinstance(rule, Mapping) or len(rule) != 1:
            raise RuleError(f"a rule node is a mapping with exactly one key, got {rule!r}")
        ((kind, body),) = rule.items()
        handler: Callable[[Any], Verdicts] | None = getattr(self, f"_n_{kind}", None)
        if handler is None:
            raise RuleError(f"unknown rule node {kind!r}")
        return handler(body)

    # -- demographic leaves --------------------------------------------------------------------
    def _dense(self, select_sql: str) -> Verdicts:
        """A node with a row for every screened patient (its default is never used): a
        subquery of ``pop``, not a table; its readers take what they need of it (the verdict
        tables only ``v``)."""
        return Verdicts(f"({select_sql})", UNKNOWN, "not screened")

    def _n_age(self, body: Mapping[str, Any]) -> Verdicts:
        age = age_years_sql("p.birth_date", self.T)
        conds = []
        if body.get("min") is not None:
            conds.append(f"{age} >= {lit(body['min'])}")
        if body.get("max") is not None:
            conds.append(f"{age} <= {lit(body['max'])}")
        rng = f"{body.get('min', '')}-{body.get('max', '')}"
        ok = " AND ".join(conds) or "TRUE"
        ev = evidence_struct("p.source", "'birth_date'", age, "'years'", "p.birth_date")
        return self._dense(
            f"SELECT p.patient_id, CASE WHEN p.birth_date IS NULL THEN {UNKNOWN} "
            f"WHEN {ok} THEN {MET} ELSE {NOT_MET} END AS v, "
            f"CASE WHEN p.birth_date IS NULL THEN 'birth date unknown' ELSE "
            f"'age ' || CAST({age} AS VARCHAR) || ' at screening (required {rng})' END AS reason, "
            f"CASE WHEN p.birth_date IS NULL THEN {EMPTY_EV} ELSE [{ev}] END AS ev FROM pop p"
        )

    def _n_sex(self, body: Any) -> Verdicts:
        want = str(body).lower()
        ev = evidence_struct("p.source", "'sex'", "NULL", "NULL", "p.birth_date", "p.sex")
        return self._dense(
            f"SELECT p.patient_id, CASE WHEN p.sex IS NULL OR p.sex NOT IN ('male', 'female') "
            f"THEN {UNKNOWN} WHEN p.sex = {lit(want)} THEN {MET} ELSE {NOT_MET} END AS v, "
            f"'recorded sex ' || COALESCE(p.sex, 'unknown') AS reason, [{ev}] AS ev FROM pop p"
        )

    def _n_manual(self, body: Any) -> Verdicts:
        return self.no_rows(MANUAL, f"manual check: {body}")

    # -- coded history (closed world) ---------------------------------------------------------
    def _history_request(self, body: Mapping[str, Any]) -> HistoryRequest:
        """The events a has/count rule counts: its concept predicate, kinds and the row
        condition (timing within the window, route)."""
        pred, _ = self.concept(body["concepts"])
        kinds = tuple(body.get("kinds") or DEFAULT_HAS_KINDS)
        w = parse_window(body.get("window", "ever"))
        start = w.start(self.as_of)
        # medications count when their exposure overlaps the window; others by start time
        overlap = f"e.start_time <= {self.T}" + (
            "" if start is None else f" AND COALESCE(e.end_time, e.start_time) >= {lit(start)}"
        )
        timing = (
            f"CASE WHEN e.kind = 'medication' THEN ({overlap}) "
            f"ELSE {w.contains('e.start_time', self.as_of)} END"
        )
        route = ""
        if body.get("route"):
            route = f" AND lower(e.route) = {lit(str(body['route']).lower())}"
        return HistoryRequest(kinds, pred, f"{timing}{route}")

    def history_requests(self, rules: Iterable[Any]) -> list[HistoryRequest]:
        """The has/count rules in the trees ``rules`` (criteria rules, manual evidence) whose
        kinds are all coded, and the exposure_days rules: what :meth:`evaluate_history`
        evaluates together."""
        requests = []
        for rule in rules:
            for kind, body in rule_nodes(rule):
                if kind == "exposure_days":
                    requests.append(self._exposure_request(body))
                elif kind in ("has", "count"):
                    req = self._history_request(body)
                    if set(req.kinds) <= set(CODED_KINDS):
                        requests.append(req)
        return requests

    def measurements(self, rules: Iterable[Any]) -> list[Measure]:
        """The lab and eGFR rules in the trees ``rules`` (for :meth:`prepare_measurements`)."""
        return [
            m for rule in rules for kind, body in rule_nodes(rule)
            if (m := self._measure(kind, body)) is not None
        ]  # fmt: skip

    def presences(self, rules: Iterable[Any]) -> list[Presence]:
        """The presence rules in the trees ``rules`` (for :meth:`prepare_measurements`)."""
        return [
            p for rule in rules for kind, body in rule_nodes(rule)
            if kind in ("has", "count") and (p := self._presence(body)) is not None
        ]  # fmt: skip

    def series_windows(self, rules: Iterable[Any]) -> list[Window]:
        """The windows of the rules in the trees ``rules`` that stage creatinine (``aki``, and
        ``egfr`` of the AKI baseline; :meth:`KidneyTables.creat`), for
        :meth:`prepare_measurements`."""
        return [
            self.aki_window(kind, body)
            for rule in rules for kind, body in rule_nodes(rule)
            if kind == "aki" or (kind == "egfr" and body.get("from") == "aki_baseline")
        ]  # fmt: skip

    def aki_window(self, kind: str, body: Mapping[str, Any]) -> Window:
        """The window of a rule node ``kind`` that stages creatinine (:data:`_AKI_WINDOW_KEYS`);
        by default the protocol's ``aki_lookback_days`` (7)."""
        default = {"days": self.settings.get("aki_lookback_days", 7)}
        return parse_window(body.get(_AKI_WINDOW_KEYS[kind], default))

    def _presence(self, body: Mapping[str, Any]) -> Presence | None:
        """The :class:`Presence` of a has/count rule; None when it is not one (kinds all
        coded, medications among them, a concept set with codes, a route)."""
        kinds = body.get("kinds") or DEFAULT_HAS_KINDS
        spec = body.get("concepts")
        if set(kinds) <= set(CODED_KINDS) or "medication" in kinds or body.get("route"):
            return None
        concept_set = self.concept_sets.get(spec) if isinstance(spec, str) else spec
        analytes = analytes_only(concept_set) if concept_set is not None else None
        if analytes is None:
            return None
        return Presence(analytes, parse_window(body.get("window", "ever")))

    def prepare_measurements(
        self,
        measures: Collection[Measure],
        presences: Collection[Presence] = (),
        series: Collection[Window] = (),
    ) -> None:
        """Before the run's rules are compiled: select the results the measurement rules
        ``measures`` (of every trial) read, the events the presence rules ``presences``
        count and the creatinine series staged for windows ``series``
        (:meth:`select_measurements`), and mark the latest results that several
        different rules compare (three trials' eGFR limits on the creatinine of the same 90
        days) to be picked once (:attr:`RunShared.shared_latest`)."""
        self.select_measurements(measures, presences, series)
        picks = Counter(m.latest_sql() for m in set(measures) if m.agg == "latest")
        self.run.shared_latest.update(q for q, n in picks.items() if n > 1)

    def select_measurements(
        self,
        measures: Iterable[Measure],
        presences: Iterable[Presence] = (),
        series: Iterable[Window] = (),
    ) -> None:
        """Select the results that the measurement rules ``measures`` read into table
        :data:`MEASUREMENTS`, in one pass over the events: per analyte, its results with a value
        in the widest window a rule gives it. Each rule then applies its own filter (analyte,
        window) to the table: the same rows as from the events. The analytes of the presence
        rules ``presences`` are selected with or without a value (the lab rules' filter
        drops those without); such a rule then reads its events from the table too (the three of
        the bundled protocols, 1M patients: 1.6 -> 0.3 s, for 0.5 s more in this pass). So are
        the creatinine results that the AKI staging of windows ``series`` reads
        (:meth:`KidneyTables.series_start`): it reads them from the table (1M patients: the
        series 3.0 -> 0.4 CPU-s, its window minima 1.3 -> under 0.3).

        Each rule read its analyte's results itself before: every row group it lies in decoded
        again, ~0.5 s per rule at 1M patients whatever the analyte's size. One pass decodes
        them once: an analyte filter of one ``IN`` reads the row groups between the first and
        the last analyte once (a scan per analyte cost 3x as much). The analytes' windows are
        a joined table: the decoding cost follows the rows that pass the scan's own filters
        (analytes, value, the widest window of all), and an ``OR`` of the windows was not one of
        them (a third slower)."""
        presences, series = list(presences), list(series)
        counted = sorted({a for p in presences for a in p.analytes})
        starts: dict[str, list[dt.datetime | None]] = {}
        for analyte, start in (
            [(m.analyte, m.window.start(self.as_of)) for m in measures]
            + [(a, p.window.start(self.as_of)) for p in presences for a in p.analytes]
            + [(kidney_tables.CREATININE, self.run.kidney.series_start(w)) for w in series]
        ):
            starts.setdefault(analyte, []).append(start)
        if not starts:
            return
        # per analyte the widest window's far edge; None: a rule reads its whole history
        edges = {
            a: None if None in s else min(t for t in s if t is not None)
            for a, s in sorted(starts.items())
        }
        windows = " UNION ALL ".join(
            f"SELECT {lit(a)} AS analyte, "
            f"{'CAST(NULL AS TIMESTAMP)' if t is None else lit(t)} AS start"
            for a, t in edges.items()
        )
        known = [t for t in edges.values() if t is not None]
        widest = f" AND e.start_time >= {lit(min(known))}" if len(known) == len(edges) else ""
        counted_sql = ", ".join(lit(a) for a in counted) or "NULL"
        # display only for the presence rules' analytes; end_time NULL: only a medication's
        # timing reads it, and a presence rule counts none
        cols = ", ".join(f"e.{c}" for c in _MEASUREMENT_COLUMNS) + (
            f", CASE WHEN e.analyte IN ({counted_sql}) THEN e.display END AS display, "
            "CAST(NULL AS TIMESTAMP) AS end_time"
        )
        valued = "e.value IS NOT NULL"
        if counted:
            valued = f"({valued} OR e.analyte IN ({counted_sql}))"
        self.backend.create(
            MEASUREMENTS,
            f"SELECT {cols} FROM events e SEMI JOIN ({windows}) w ON w.analyte = e.analyte "
            "AND (w.start IS NULL OR e.start_time >= w.start) "
            f"WHERE e.analyte IN ({', '.join(lit(a) for a in edges)}) AND {valued} "
            f"AND e.start_time <= {self.T}{widest}",
        )
        self.run.presences.update(presences)
        self.run.kidney.read_series_from(MEASUREMENTS, series)

    def evaluate_history(self, requests: Sequence[HistoryRequest]) -> None:
        """Evaluate coded-history requests in one pass over the events: a table of their rows
        (``k``: the request; each an event, its evidence and its end) and one with a group of
        rows ``k`` per distinct request (patient, count, evidence, latest record); each
        has/count node is then a filter of the groups, each exposure_days node one of the rows.
        (Evaluated one by one, each of the ~70 requests of the four protocols scanned every
        coded event again: at 100k patients 1.9 s; the two exposure rules of the bundled
        protocols read the medications again: 1M patients, 2.5 CPU-s.) The accepted codes of
        each request come from the run's distinct codes (:meth:`_accepted_codes`), joined to
        the events once."""
        new = list(dict.fromkeys(r for r in requests if r.key not in self.run.history))
        if not new:
            return
        m = " UNION ALL ".join(
            f"SELECT {k} AS k, * FROM ({self._accepted_codes(r.pred, r.kinds)})"
            for k, r in enumerate(new)
        )
        when = " ".join(f"WHEN {k} THEN ({r.cond})" for k, r in enumerate(new))
        kinds = sorted({k for r in new for k in r.kinds})
        rows = self.table(
            f"SELECT m.k, {_HISTORY_ROW}, e.end_time FROM {events_of(kinds)} e "
            f"JOIN ({m}) m ON {_CODE_KEYS} WHERE CASE m.k {when} END"
        )
        # stored by request: each has/count node's filter ``k = <k>`` reads the row groups of its
        # own rows (1M patients: the ~70 filters 1.9 -> 0.7 s, for a 0.4 s sort)
        grouped = group_rows(f"SELECT * FROM {rows}", ("k", "patient_id"), _HISTORY_AGGS)
        table = self.table(f"SELECT * FROM ({grouped}) ORDER BY k")
        for k, r in enumerate(new):
            self.run.history[r.key] = HistoryRows(table, rows, k)

    def _history(self, req: HistoryRequest) -> HistoryRows:
        """Where the history pass put ``req``'s answer; evaluated now when the run did not
        (a rule compiled alone)."""
        self.evaluate_history([req])  # a no-op when the run evaluated it beforehand
        return self.run.history[req.key]

    def _has_like(self, body: Mapping[str, Any], op: str, value: float) -> Verdicts:
        req = self._history_request(body)
        _, label = self.concept(body["concepts"])
        w = parse_window(body.get("window", "ever"))
        coded = set(req.kinds) <= set(CODED_KINDS)
        if coded:
            table, _, k = self._history(req)
            agg = f"SELECT * FROM {table} WHERE k = {k}"
        else:
            rows = f"{self._uncoded_events(body, req)} AND {req.cond}"
            agg = group_rows(f"SELECT {_HISTORY_ROW} {rows}", ("patient_id",), _HISTORY_AGGS)
        test = f"a.n {OPS[op]} {lit(value)}"
        reason = (
            f"CAST(a.n AS VARCHAR) || ' record(s) of {escape(label)} ({w.label}), latest: ' "
            f"|| {latest_text_part('a.last')} || ' on ' || {latest_date_part('a.last')}"
        )
        zero_ok = _compare(0, op, value)
        # a rule of the history table is a subquery of it, not a table of its own: its readers
        # take what they need of it (~70 statements fewer; the verdict tables read only ``v``)
        return self._finish(
            agg,
            f"CASE WHEN {test} THEN {MET} ELSE {NOT_MET} END",
            reason,
            "a.evs",
            MET if zero_ok else NOT_MET,
            f"no record of {label} ({w.label})",
            table=not coded,
        )

    def _uncoded_events(self, body: Mapping[str, Any], req: HistoryRequest) -> str:
        """SQL ``FROM ... WHERE`` of the events a has/count rule over kinds not all coded
        counts: a presence rule's from :data:`MEASUREMENTS` when the run selected them there
        (:attr:`RunShared.presences`), else from the events (the predicate on each)."""
        if self._presence(body) not in self.run.presences:
            return f"FROM {events_of(req.kinds)} e WHERE {req.pred}"
        kinds = ", ".join(lit(k) for k in req.kinds)
        return f"FROM {MEASUREMENTS} e WHERE e.kind IN ({kinds}) AND {req.pred}"

    def _n_has(self, body: Mapping[str, Any]) -> Verdicts:
        return self._has_like(body, ">=", 1)

    def _n_count(self, body: Mapping[str, Any]) -> Verdicts:
        return self._has_like(body, str(body.get("op", ">=")), float(body["value"]))

    def _exposure_request(self, body: Mapping[str, Any]) -> HistoryRequest:
        """The medications an exposure_days rule adds up: those of its concepts whose
        exposure (:data:`_EXPOSURE_END`) overlaps its window."""
        pred, _ = self.concept(body["concepts"])
        start = parse_window(body.get("window", "ever")).start(self.as_of)
        timing = f"e.start_time <= {self.T}"
        if start is not None:
            timing += f" AND ({_EXPOSURE_END}) >= {lit(start)}"
        return HistoryRequest(("medication",), pred, timing)

    def _n_exposure_days(self, body: Mapping[str, Any]) -> Verdicts:
        _, label = self.concept(body["concepts"])
        w = parse_window(body.get("window", "ever"))
        start = w.start(self.as_of)
        lo = "e.start_time" if start is None else f"GREATEST(e.start_time, {lit(start)})"
        hi = f"LEAST({_EXPOSURE_END}, {self.T})"
        _, rows, k = self._history(self._exposure_request(body))
        op, value = str(body.get("op", ">")), float(body["value"])
        agg = f"""
            WITH iv AS (
                SELECT e.patient_id, {lo} AS s, {hi} AS t, e.ev1, e.start_time
                FROM {rows} e WHERE e.k = {k}),
            d AS (SELECT DISTINCT patient_id, s, t FROM iv),
            o AS (SELECT *, max(t) OVER (PARTITION BY patient_id ORDER BY s, t
                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_t FROM d),
            g AS (SELECT *, sum(CASE WHEN prev_t IS NULL OR s > prev_t THEN 1 ELSE 0 END)
                      OVER (PARTITION BY patient_id ORDER BY s, t ROWS UNBOUNDED PRECEDING)
                      AS grp FROM o),
            isl AS (SELECT patient_id, grp, min(s) AS s, max(t) AS t FROM g GROUP BY ALL),
            tot AS (SELECT patient_id, sum(GREATEST(epoch(t) - epoch(s), 0)) / 86400.0 AS days
                    FROM isl GROUP BY patient_id),
            evs AS (SELECT patient_id, {ev_list("ev1", "start_time")} AS evs
                    FROM iv GROUP BY patient_id)
            SELECT tot.patient_id, tot.days, evs.evs FROM tot JOIN evs USING (patient_id)"""
        reason = (
            f"{fmt_num('a.days')} || ' day(s) of {escape(label)} {w.label} "
            f"(rule: {escape(op)} {value:g} days)'"
        )
        return self._finish(
            agg,
            f"CASE WHEN a.days {OPS[op]} {lit(value)} THEN {MET} ELSE {NOT_MET} END",
            reason,
            "a.evs",
            MET if _compare(0, op, value) else NOT_MET,
            f"no exposure to {label} ({w.label})",
        )

    # -- measurements (open world) -------------------------------------------------------------
    def _numeric(self, m: Measure) -> Verdicts:
        """The verdicts of measurement rule ``m``: per patient, the latest, lowest or highest
        result, or whether any or every result meets it; ``pass`` (``val op limit``) is NULL
        when a bound leaves the rule open.

        ``min``/``max`` with bounds among a patient's results are decided from the interval
        the true extreme lies in (:func:`_extreme_of_bounds`), decided only when every value
        in it agrees; the result shown is the one with the extreme reported number, as without
        bounds. The latest results of an analyte in a window that several rules compare (the
        trials' eGFR limits) are picked once (:attr:`RunShared.shared_latest`)."""
        op, agg, rule_text, missing = m.op, m.agg, m.rule_text, m.missing
        passes = compare_sql("val", "cmp", op, "lim")
        show = (
            f"'{escape(m.label)} ' || COALESCE(cmp, '') || {fmt_num('val')} || "
            f"' {escape(m.unit)} on ' || strftime(t, '%Y-%m-%d')"
        )
        v = f"CASE WHEN a.pass THEN {MET} WHEN NOT a.pass THEN {NOT_MET} ELSE {UNKNOWN} END"
        reason = f"'{agg} ' || a.what || ' (rule: {escape(rule_text)})'"
        if agg == "latest":
            latest = m.latest_sql()
            source = self.table(latest) if latest in self.run.shared_latest else f"({latest})"
            sql = (
                f"SELECT patient_id, {passes} AS pass, {show} AS what, [ev1] AS evs "
                f"FROM {m.with_limit(source)}"
            )
            return self._finish(sql, v, reason, "a.evs", UNKNOWN, missing)
        rows_sql = f"SELECT *, {passes} AS pass FROM {m.with_limit(f'({m.rows})')}"
        tie = tie_order("ev1")  # results of the same instant: by their evidence
        order = {"min": f"val ASC, t DESC, {tie}", "max": f"val DESC, t DESC, {tie}"}
        if agg in order:
            ends, pass_ = _extreme_of_bounds(agg, op)
            sql = f"""
                WITH r AS ({rows_sql}),
                k AS ({first_per_patient("SELECT * FROM r", order[agg])}){ends}
                SELECT k.patient_id, {pass_} AS pass, {show} AS what, [k.ev1] AS evs
                FROM k JOIN x ON x.patient_id = k.patient_id"""
            return self._finish(sql, v, reason, "a.evs", UNKNOWN, missing)
        if agg not in ("any", "every"):
            raise RuleError(f"unknown aggregation {agg!r} (latest, min, max, any, every)")
        sql = f"""
            WITH r AS ({rows_sql})
            SELECT patient_id, count(*) AS n, count_if(COALESCE(pass, FALSE)) AS n_true,
                   count_if(COALESCE(NOT pass, FALSE)) AS n_false,
                   {ev_list("ev1", "t", "pass")} AS ev_true,
                   {ev_list("ev1", "t", "NOT pass")} AS ev_false,
                   {ev_list("ev1", "t")} AS ev_all,
                   {latest_text("t", show)} FILTER (WHERE pass) AS what_true,
                   {latest_text("t", show)} FILTER (WHERE NOT pass) AS what_false
            FROM r GROUP BY patient_id"""
        # results reported as bounds that leave the rule open (pass NULL, screen.bounds)
        n_open = "CAST(a.n - a.n_true - a.n_false AS VARCHAR)"
        open_part = f"'; ' || {n_open} || ' reported as bounds that leave it open'"
        if agg == "any":
            v = (
                f"CASE WHEN a.n_true > 0 THEN {MET} WHEN a.n_false < a.n THEN {UNKNOWN} "
                f"ELSE {NOT_MET} END"
            )
            reason = (
                f"CASE WHEN a.n_true > 0 THEN CAST(a.n_true AS VARCHAR) || ' of ' || "
                f"CAST(a.n AS VARCHAR) || ' values meet {escape(rule_text)}, latest ' || "
                f"{latest_text_part('a.what_true')} "
                "ELSE 'none of ' || CAST(a.n AS VARCHAR) || "
                f"' values meets {escape(rule_text)}' || "
                f"CASE WHEN a.n_false < a.n THEN {open_part} ELSE '' END END"
            )
            ev = "CASE WHEN a.n_true > 0 THEN a.ev_true ELSE a.ev_all END"
        else:
            v = (
                f"CASE WHEN a.n_false > 0 THEN {NOT_MET} WHEN a.n_true < a.n THEN {UNKNOWN} "
                f"ELSE {MET} END"
            )
            reason = (
                f"CASE WHEN a.n_false > 0 THEN CAST(a.n_false AS VARCHAR) || ' of ' || "
                f"CAST(a.n AS VARCHAR) || ' values fail {escape(rule_text)}, latest ' || "
                f"{latest_text_part('a.what_false')} "
                f"WHEN a.n_true < a.n THEN CAST(a.n_true AS VARCHAR) || ' of ' || "
                f"CAST(a.n AS VARCHAR) || ' values meet {escape(rule_text)}' || {open_part} "
                f"ELSE 'all ' || CAST(a.n AS VARCHAR) || ' values meet {escape(rule_text)}' END"
            )
            ev = "CASE WHEN a.n_false > 0 THEN a.ev_false ELSE a.ev_all END"
        return self._finish(sql, v, reason, ev, UNKNOWN, missing)

    def _measure(self, kind: str, body: Mapping[str, Any]) -> Measure | None:
        """The :class:`Measure` of a rule node that reads results from the events (lab, eGFR
        from creatinine); None for any other node."""
        if kind == "lab":
            return self._lab_measure(body)
        if kind == "egfr" and body.get("from") != "aki_baseline":
            return self._egfr_measure(body)
        return None

    def _n_lab(self, body: Mapping[str, Any]) -> Verdicts:
        return self._numeric(self._lab_measure(body))

    def _lab_measure(self, body: Mapping[str, Any]) -> Measure:
        analyte = str(body["analyte"])
        if analyte not in units.ANALYTES:
            raise RuleError(f"unknown analyte {analyte!r}")
        cunit = units.canonical_unit(analyte)
        w = parse_window(body.get("window", "ever"))
        op = str(body["op"])
        if op not in OPS:
            raise RuleError(f"unknown operator {op!r}")
        if "uln_multiple" in body or "lln_multiple" in body:
            upper = "uln_multiple" in body
            k = float(body["uln_multiple" if upper else "lln_multiple"])
            default = units.default_uln(analyte) if upper else units.default_lln(analyte)
            ref = "e.ref_high" if upper else "e.ref_low"
            limit = f"({lit(k)} * COALESCE(ref, {lit(default)}))"
            ref_col = f", {ref} AS ref"
            name = "ULN" if upper else "LLN"
            rule_text = f"{op} {k:g} x {name}"
            note = (
                f"'{name} ' || COALESCE({fmt_num(ref)} || ' (reference range)', "
                f"{lit((f'{default:g} (default table)') if default is not None else 'unknown')})"
            )
        else:
            given = float(body["value"])
            unit = body.get("unit") or cunit
            try:
                threshold = units.to_canonical(analyte, given, unit)
            except units.UnitError as e:
                raise RuleError(str(e)) from e
            limit = lit(threshold)
            ref_col = ""
            rule_text = f"{op} {given:g} {unit}"
            if unit != cunit:
                rule_text += f" = {threshold:.4g} {cunit}"
            note = "NULL"
        # the comparator of a bound read once per result, then compared and shown
        note = reported_as_sql(note, "e.cmp", "e.value_text")
        rows = (
            f"SELECT e.patient_id, e.start_time AS t, e.value AS val, e.cmp{ref_col}, "
            f"{event_evidence('e', note)} AS ev1 "
            f"FROM (SELECT *, {comparator_sql('e.value_text')} AS cmp FROM {MEASUREMENTS} e "
            f"WHERE e.analyte = {lit(analyte)} AND e.value IS NOT NULL "
            f"AND {w.contains('e.start_time', self.as_of)}) e"
        )
        return Measure(
            analyte,
            w,
            rows,
            limit,
            op,
            agg=str(body.get("agg", "latest")),
            label=analyte,
            unit=cunit,
            rule_text=rule_text,
            missing=f"no {analyte} result in {_window_phrase(w)}",
        )

    def _n_egfr(self, body: Mapping[str, Any]) -> Verdicts:
        m = self._measure("egfr", body)
        return self._egfr_baseline(body) if m is None else self._numeric(m)

    def _egfr_rule(self, body: Mapping[str, Any]) -> tuple[str, str, float, str]:
        """(equation, op, value, rule text) of an eGFR rule."""
        equation = str(body.get("equation", "ckd-epi-2021"))
        if equation not in EQUATIONS:
            raise RuleError(f"unknown eGFR equation {equation!r}")
        if needs_cystatin(equation):
            raise RuleError(f"{equation}: cystatin C pairing is not supported in rules yet")
        op = str(body["op"])
        value = float(body["value"])
        return equation, op, value, f"eGFR {op} {value:g} mL/min/1.73m2 ({equation})"

    def _egfr_measure(self, body: Mapping[str, Any]) -> Measure:
        equation, op, value, rule_text = self._egfr_rule(body)
        w = parse_window(body.get("window", "ever"))
        age = age_years_sql("p.birth_date", "e.start_time")
        egfr = _rounded_egfr(equation, "e.value", age)
        note = (
            f"'eGFR {equation} from creatinine ' || {fmt_num('e.value')} || ' umol/L, age ' "
            f"|| CAST({age} AS VARCHAR) || ', ' || p.sex"
        )
        # a bound on creatinine ("<0.3 mg/dL") is the opposite bound on its eGFR
        cmp = comparator_sql("e.value_text")
        note = reported_as_sql(note, cmp, "e.value_text", "creatinine")
        ev = evidence_struct(
            "e.source", "e.code_system || '|' || e.code", "val", "'mL/min/1.73m2'", "t", "note"
        )
        rows = (
            f"SELECT patient_id, t, val, cmp, {ev} AS ev1 "
            f"FROM (SELECT e.patient_id, e.start_time AS t, {egfr} AS val, "
            f"{mapped_comparator_sql(cmp, EGFR_FROM_CREATININE)} AS cmp, "
            f"{note} AS note, e.source, e.code_system, e.code "
            f"FROM {MEASUREMENTS} e JOIN pop p ON p.patient_id = e.patient_id "
            f"WHERE e.analyte = {lit(kidney_tables.CREATININE)} AND e.value IS NOT NULL "
            f"AND p.birth_date IS NOT NULL AND p.sex IN ('male', 'female') "
            f"AND {w.contains('e.start_time', self.as_of)}) e"
        )
        return Measure(
            kidney_tables.CREATININE,
            w,
            rows,
            lit(value),
            op,
            agg=str(body.get("agg", "latest")),
            label="eGFR",
            unit="mL/min/1.73m2",
            rule_text=rule_text,
            missing=f"no creatinine result (with age and sex) in {_window_phrase(w)}",
        )

    def _egfr_baseline(self, body: Mapping[str, Any]) -> Verdicts:
        equation, op, value, rule_text = self._egfr_rule(body)
        baseline = str(body.get("baseline", "kdigo"))
        w = self.aki_window("egfr", body)
        stages = self.run.kidney.stages(baseline, w)
        age = age_years_sql("p.birth_date", "s.t")
        egfr = _rounded_egfr(equation, "s.baseline_umol_l", age)
        note = (
            f"'pre-AKI eGFR {equation} of baseline creatinine ' || {fmt_num('s.baseline_umol_l')}"
            f" || ' umol/L (' || s.baseline_source || ', strategy {baseline})'"
        )
        # a creatinine reported as "<b" in the year before the result may be in the baseline's
        # window (kidney.aki reads it as b): the baseline is then at most what is shown, and its
        # eGFR at least (a back-calculated baseline is exact)
        creat = self.run.kidney.creat(w)
        below = (
            f"SELECT DISTINCT x.rid FROM {stages} x JOIN {creat} r "
            f"ON r.patient_id = x.patient_id AND r.cmp IN ('<', '<=') AND r.t < x.t "
            f"AND r.t >= x.t - INTERVAL '{W365D_S}' SECOND"
        )
        cmp = (
            f"CASE WHEN lb.rid IS NOT NULL AND s.baseline_source <> 'mdrd75-backcalc' "
            f"THEN '{EGFR_FROM_CREATININE['<']}' END"
        )
        said = (
            "'; a creatinine reported below a bound in the year before: the baseline is at "
            "most this, its eGFR at least'"
        )
        shown = f"note || CASE WHEN cmp IS NOT NULL THEN {said} ELSE '' END"
        ev = evidence_struct("source", "code", "val", "'mL/min/1.73m2'", "t", shown)
        # the eGFR and the comparator computed once per result, then compared and shown
        rows = f"""
            SELECT patient_id, t, val, cmp, {ev} AS ev1, kdigo_stage
            FROM (
              SELECT s.patient_id, s.t, {egfr} AS val, {cmp} AS cmp,
                     s.kdigo_stage, {note} AS note, c.source, c.code
              FROM {stages} s JOIN pop p ON p.patient_id = s.patient_id
              JOIN {creat} c ON c.rid = s.rid
              LEFT JOIN ({below}) lb ON lb.rid = s.rid
              WHERE s.baseline_umol_l IS NOT NULL AND p.birth_date IS NOT NULL
                AND p.sex IN ('male', 'female') AND {w.contains("s.t", self.as_of)})"""
        # shown: the result of the highest KDIGO stage in the window (latest among equals)
        return self._numeric(
            Measure(
                kidney_tables.CREATININE,
                w,
                rows,
                lit(value),
                op,
                agg="latest",
                label="pre-AKI eGFR",
                unit="mL/min/1.73m2",
                rule_text=rule_text,
                missing=f"no creatinine with a baseline in {_window_phrase(w)}",
                latest_order="kdigo_stage DESC, t DESC",
            )
        )

    def _n_aki(self, body: Mapping[str, Any]) -> Verdicts:
        return self.run.kidney.aki_node(self, body)

    # -- logic ---------------------------------------------------------------------------------
    def _n_all(self, children: list[Any]) -> Verdicts:
        return self._combine("all", [self.node(c) for c in children])

    def _n_any(self, children: list[Any]) -> Verdicts:
        return self._combine("any", [self.node(c) for c in children])

    def _n_not(self, child: Any) -> Verdicts:
        t = self.node(child)
        flip = {MET: NOT_MET, NOT_MET: MET}
        return Verdicts(
            self.table(
                f"SELECT patient_id, CASE WHEN v = {MET} THEN {NOT_MET} WHEN v = {NOT_MET} "
                f"THEN {MET} ELSE v END AS v, CASE WHEN v IN ({MET}, {NOT_MET}) "
                f"THEN 'not: ' || reason ELSE reason END AS reason, ev FROM {t.name}"
            ),
            flip.get(t.v, t.v),
            f"not: {t.reason}" if t.v in flip else t.reason,
        )

    def _combine(self, how: str, nodes: list[Verdicts]) -> Verdicts:
        """Kleene ``all``/``any``: the verdict, the reasons and evidence of the children that
        decide it (those whose verdict equals the result), in order. Rows for the patients
        present in any child; the default combines the children's defaults the same way."""
        if not nodes:
            raise RuleError(f"'{how}' needs at least one child")
        if len(nodes) == 1:
            return nodes[0]
        vs = [f"v{i}" for i in range(len(nodes))]
        if how == "any":
            v = f"GREATEST({', '.join(vs)})"
        else:
            v = (
                f"CASE WHEN LEAST({', '.join(vs)}) = {NOT_MET} THEN {NOT_MET} "
                f"WHEN {' OR '.join(f'{x} = {UNKNOWN}' for x in vs)} THEN {UNKNOWN} "
                f"WHEN {' OR '.join(f'{x} = {MANUAL}' for x in vs)} THEN {MANUAL} ELSE {MET} END"
            )
        cols = ", ".join(
            f"{n.column(f'c{i}', 'v')} AS v{i}, {n.column(f'c{i}', 'reason')} AS r{i}, "
            f"{n.column(f'c{i}', 'ev')} AS e{i}"
            for i, n in enumerate(nodes)
        )
        pid, joined = any_patient(nodes)
        inner = f"SELECT {pid} AS patient_id, {cols} FROM {joined}"
        reasons = ", ".join(f"CASE WHEN v{i} = v THEN r{i} END" for i in range(len(nodes)))
        ev = f"CASE WHEN v0 = v THEN e0 ELSE {EMPTY_EV} END"
        for i in range(1, len(nodes)):
            ev = f"list_concat({ev}, CASE WHEN v{i} = v THEN e{i} ELSE {EMPTY_EV} END)"
        default = kleene(how, [n.v for n in nodes])
        return Verdicts(
            self.table(
                f"SELECT patient_id, v, concat_ws('; ', {reasons}) AS reason, {ev} AS ev "
                f"FROM (SELECT *, {v} AS v FROM ({inner}))"
            ),
            default,
            "; ".join(n.reason for n in nodes if n.v == default),
        )


def _extreme_of_bounds(agg: str, op: str) -> tuple[str, str]:
    """(CTE ``x`` over rows ``r``, verdict SQL) of rule ``min/max(values) op lim`` for patients
    with results reported as bounds (screen.bounds); rows of ``k`` (the result shown) give
    ``lim`` and, without bounds, ``pass``.

    The true minimum lies between two ends: at most the lowest exact, ``<b`` or ``<=b`` number
    (strictly below it when a ``<b`` reaches it; no end when every result is ``>b``) and at
    least the lowest exact, ``>b`` or ``>=b`` number (strictly above when only a ``>b`` reaches
    it; no end when a ``<b`` leaves it unbounded below); every value between them can be the
    true minimum. The maximum mirrors it. Each end is a bound on the extreme, decided as one
    (:func:`~trialsieve.screen.bounds.compare_sql`); the rule is decided when either end decides
    it (they cannot disagree) or both ends are one number, else unknown.
    """
    lo_side, hi_side = ("<", "<="), (">", ">=")
    # min: the "near" end (the true minimum is at most it) comes from results bounded above
    near_side, far_side = (lo_side, hi_side) if agg == "min" else (hi_side, lo_side)
    best = "MIN" if agg == "min" else "MAX"
    top = "LEAST" if agg == "min" else "GREATEST"

    def end(side: tuple[str, str], name: str, strict_on_tie: bool) -> tuple[str, str]:
        strict, closed = side
        cols = (
            f"{best}(CASE WHEN cmp IS NULL OR cmp = '{closed}' THEN val END) AS {name}_c,\n"
            f"{best}(CASE WHEN cmp = '{strict}' THEN val END) AS {name}_s"
        )
        beyond = ("<" if agg == "min" else ">") + ("=" if strict_on_tie else "")
        cmp = (
            f"CASE WHEN x.{name}_c IS NULL OR x.{name}_s {beyond} x.{name}_c "
            f"THEN '{strict}' ELSE '{closed}' END"
        )
        return cols, cmp

    # near end: a strict bound at the same number keeps the extreme strictly beyond it ("<1"
    # beside an exact 1: the minimum is below 1); far end: an exact or closed result at that
    # number can be the extreme itself
    near_cols, near_cmp = end(near_side, "near", strict_on_tie=True)
    far_cols, far_cmp = end(far_side, "far", strict_on_tie=False)
    # a result bounded the other way (e.g. "<b" for the minimum's lower end) leaves no far end
    open_far = f"max(CASE WHEN cmp IN ('{near_side[0]}', '{near_side[1]}') THEN 1 ELSE 0 END)"
    cte = f""",
                x AS (SELECT patient_id, max(CASE WHEN cmp IS NULL THEN 0 ELSE 1 END) AS bounds,
                        {open_far} AS open_far, {near_cols}, {far_cols}
                      FROM r GROUP BY patient_id)"""
    near = f"{top}(x.near_c, x.near_s)"
    far = f"CASE WHEN x.open_far = 0 THEN {top}(x.far_c, x.far_s) END"
    # both ends at one number: the extreme is that number (e.g. an exact 1 beside ">=1")
    verdict = (
        f"CASE WHEN x.bounds = 0 THEN k.pass "
        f"WHEN {near} = {far} THEN {compare_sql(near, 'NULL', op, 'k.lim')} ELSE COALESCE("
        f"{compare_sql(near, near_cmp, op, 'k.lim')}, {compare_sql(far, far_cmp, op, 'k.lim')}) END"
    )
    return cte, verdict


def _rounded_egfr(equation: str, creatinine: str, age: str) -> str:
    """eGFR SQL (kidney.egfr) rounded to EGFR_DECIMALS, for patients of ``pop`` aliased p."""
    return round_half_up(egfr_sql(equation, creatinine, age, FEMALE), EGFR_DECIMALS)


FEMALE = "p.sex = 'female'"


def _window_phrase(w: Window) -> str:
    return (
        "the record"
        if w.span_s is None
        else f"the {w.label.removeprefix('within ')} before screening"
    )


def _compare(x: float, op: str, value: float) -> bool:
    return {
        "<": x < value,
        "<=": x <= value,
        ">": x > value,
        ">=": x >= value,
        "==": x == value,
        "=": x == value,
    }[op]


def prepare_run(compilers: Sequence[Compiler], rules: Sequence[Iterable[Any]]) -> None:
    """The run-level passes, before any rule is compiled; ``rules[i]``: the rule trees of
    ``compilers[i]`` (criteria and manual evidence), the compilers sharing one
    :class:`RunShared`. One pass over the events selects the results every lab and eGFR rule
    reads and the events of the presence rules (:meth:`Compiler.prepare_measurements`), one
    evaluates the coded-history rules of every trial (:meth:`Compiler.evaluate_history`)."""
    if not compilers:
        return
    pairs = [(c, list(rs)) for c, rs in zip(compilers, rules, strict=True)]
    first = compilers[0]  # the passes write into the run's shared state: any compiler will do
    first.prepare_measurements(
        [m for c, rs in pairs for m in c.measurements(rs)],
        [p for c, rs in pairs for p in c.presences(rs)],
        [w for c, rs in pairs for w in c.series_windows(rs)],
    )
    first.evaluate_history([q for c, rs in pairs for q in c.history_requests(rs)])
