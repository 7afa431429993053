"""The kidney rules of ``trialsieve.kidney`` over the store, for the screening compiler.

Creatinine results (``events.analyte = 'creatinine'``, µmol/L) up to the screening instant get
their window minima once (:func:`trialsieve.kidney.aki.creatinine_windows_sql`) and are staged
once per baseline strategy from them with :func:`trialsieve.kidney.aki.creatinine_stages_sql` (KDIGO
2012 / NHS England PSA 2014, exactly as ``trialsieve aki``), urine output with
:mod:`trialsieve.kidney.urine` (KDIGO 2012 Table 2); the ``aki`` rule node reads these tables.
They are made once per rule window, for the patients with data in it (:meth:`KidneyTables.creat`,
:meth:`KidneyTables.urine`). History before the look-back window is used for baselines; nothing
after ``as_of`` is seen.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from trialsieve.kidney import aki, urine
from trialsieve.screen.backend import Backend
from trialsieve.screen.bounds import comparator_sql, reported_as_sql
from trialsieve.screen.sql import (
    EMPTY_EV,
    MET,
    NOT_MET,
    OPS,
    UNKNOWN,
    Window,
    ev_list,
    evidence_struct,
    fmt_num,
    latest_text,
    latest_text_part,
    lit,
)

if TYPE_CHECKING:
    from trialsieve.screen.compile import Compiler, Verdicts

MIN_48H = "min-48h"

#: the store's analyte of the creatinine results (µmol/L) that every kidney table stages
CREATININE = "creatinine"

#: how far before a result its staging reads: every baseline and window of kidney.aki looks
#: back at most 365 days, and a day more covers the frames' whole epoch seconds
LOOKBACK = dt.timedelta(seconds=aki.W365D_S + aki.DAY_S)

#: the staging columns the aki rule node reads (without the NHS RV2 median at every row, the
#: costliest window; ``kidney.aki.creatinine_stages_sql`` computes the same values without it;
#: and without the times of the window minima: the reference samples of the rows a rule
#: shows are found by ``kidney.aki.window_sample_time_sql``)
STAGE_COLUMNS = (
    "rid", "patient_id", "t", "scr", "min48_umol_l", "rise48_umol_l", "ratio48",
    "baseline_umol_l", "baseline_source", "ratio", "kdigo_stage", "kdigo_reason", "nhs_stage",
)  # fmt: skip

#: SQL: the length (s) of the window of a row's reference sample (``_creat_rows``), by kind
_SAMPLE_FRAME_S = {
    "min48": str(aki.W48H_S),
    "baseline": aki.baseline_sample_frame_sql("s.baseline_source"),
}


def creatinine_series_sql(
    join: str,
    until: str,
    *,
    ordered_rid: bool = True,
    source: str = "events",
    since: str | None = None,
) -> str:
    """The ``creat`` relation :func:`trialsieve.kidney.aki.creatinine_stages_sql` stages (with
    ``bounds=True``), from the store's ``events`` (alias ``e``): rid, patient_id, t, scr
    (µmol/L), cmp (the comparator of a bound, else NULL), value_text, source, code of the
    creatinine results up to SQL instant ``until`` (and from ``since``, when given) of the
    patients the ``join`` clause keeps. Screening and the report plots read the same series.
    ``source``: the relation of events to read (the run's measurement results hold the same
    rows for the instants they cover).

    ``rid`` numbers the results in (patient, time, event id) order; with ``ordered_rid=False``
    it is any unique number, without that sort (a whole-part sort of every creatinine result:
    ~0.6 CPU-s per 100k patients), for a caller that stores the series once as a table and
    uses rid only as its key (a view would number its rows anew at each evaluation)."""
    number = (
        "row_number() OVER (ORDER BY e.patient_id, e.start_time, e.event_id)"
        if ordered_rid
        else "row_number() OVER ()"
    )
    return (
        f"SELECT {number} AS rid, "
        "e.patient_id, e.start_time AS t, e.value AS scr, "
        f"{comparator_sql('e.value_text')} AS cmp, e.value_text, e.source, "
        f"e.code_system || '|' || e.code AS code FROM {source} e {join} "
        f"WHERE e.analyte = {lit(CREATININE)} AND e.value IS NOT NULL AND e.start_time <= {until}"
        + ("" if since is None else f" AND e.start_time >= {since}")
    )


class KidneyTables:
    """Lazily built tables of a run (or part), per rule window: creatinine, stages per
    baseline, urine periods, weights, urine runs and stages."""

    def __init__(self, backend: Backend, as_of: dt.datetime) -> None:
        self.backend = backend
        self.as_of = as_of
        self.T = lit(as_of)
        self._made: set[str] = set()
        #: window length (s; None = ever) -> table-name suffix (:meth:`_scope`)
        self._scopes: dict[float | None, str] = {}
        #: window length -> the relation its creatinine series is read from, when not the
        #: events (:meth:`read_series_from`)
        self._sources: dict[float | None, str] = {}

    def series_start(self, w: Window) -> dt.datetime | None:
        """The earliest creatinine result the stages of the results in window ``w`` read
        (:data:`LOOKBACK` before the window; None for "ever": the whole history)."""
        start = w.start(self.as_of)
        return None if start is None else start - LOOKBACK

    def read_series_from(self, relation: str, windows: Iterable[Window]) -> None:
        """Read the creatinine series of ``windows`` from ``relation``, which holds every
        creatinine result with a value from :meth:`series_start` of each of them to as_of,
        with the columns of ``events`` that :func:`creatinine_series_sql` reads (the run's
        measurement results: the results decoded once, where the events would be decoded
        again, every creatinine result of every patient, for the ~3 % with a recent one)."""
        for w in windows:
            self._sources[w.span_s] = relation

    def _make(self, name: str, sql: str) -> str:
        if name not in self._made:
            self.backend.create(name, sql)
            self._made.add(name)
        return name

    def _scope(self, w: Window) -> str:
        """The table-name suffix of the tables made for rules over window ``w``: ``_ever``, or
        its length in whole seconds (numbered on should two windows round alike)."""
        suffix = self._scopes.get(w.span_s)
        if suffix is None:
            suffix = "_ever" if w.span_s is None else f"_{round(w.span_s)}s"
            if suffix in self._scopes.values():
                suffix += f"_{len(self._scopes)}"
            self._scopes[w.span_s] = suffix
        return suffix

    def _with_data_in(self, w: Window, analyte: str, time_col: str, source: str = "events") -> str:
        """A SEMI JOIN clause on events ``e`` keeping the patients with an ``analyte`` value
        whose ``time_col`` is in window ``w`` (nothing to keep out for "ever"), found in the
        relation ``source``."""
        if w.span_s is None:
            return ""
        return (
            f"SEMI JOIN (SELECT x.patient_id FROM {source} x WHERE x.analyte = {lit(analyte)} "
            f"AND x.value IS NOT NULL AND {w.contains(f'x.{time_col}', self.as_of)}) q "
            "ON q.patient_id = e.patient_id "
        )

    def creat(self, w: Window) -> str:
        """The creatinine series (:func:`creatinine_series_sql`) of the screened patients with
        a creatinine result in window ``w``, from :meth:`series_start` to as_of (what the
        baselines of the results in ``w`` read), stored once per window: a rule over the
        results in ``w`` reads no other patient's, and most of a hospital's patients have no
        recent creatinine to stage (97 % of the synthetic patients with creatinine, for a
        7-day window). Its rid is only the key that joins the stages back to their results."""
        source = self._sources.get(w.span_s, "events")
        recent = self._with_data_in(w, CREATININE, "start_time", source)
        start = self.series_start(w)
        series = creatinine_series_sql(
            f"JOIN pop p ON p.patient_id = e.patient_id {recent}",
            self.T,
            ordered_rid=False,
            source=source,
            since=None if start is None else lit(start),
        )
        return self._make(f"__creat{self._scope(w)}", series)

    def stages(self, baseline: str, w: Window) -> str:
        """Per-result KDIGO/NHS stages with ``baseline`` strategy (kidney.aki) of the
        series :meth:`creat` keeps for window ``w``."""
        if baseline not in aki.BASELINES:
            raise ValueError(f"unknown baseline strategy {baseline!r} ({', '.join(aki.BASELINES)})")
        creat = self.creat(w)
        pats = self._make("__aki_patients", "SELECT patient_id, birth_date, sex FROM pop")
        windows = self._make(
            f"__creat_windows{self._scope(w)}",
            aki.creatinine_windows_sql(creat, bounds=True, times=False),
        )
        sql = aki.creatinine_stages_sql(
            creat,
            patients=pats,
            baseline=baseline,
            columns=STAGE_COLUMNS,
            ordered=False,
            windows=windows,
            bounds=True,
        )
        return self._make(f"__stages_{baseline.replace('-', '_')}{self._scope(w)}", sql)

    def urine(self, w: Window) -> tuple[str, str]:
        """(urine periods, weights) tables in the layout of kidney.urine, of the screened
        patients with a urine period ending in window ``w`` (their whole history up to as_of),
        once per window: a run or stage reached in ``w`` is reached at most at the run's end,
        so its last period ends in ``w``, and ``w`` is all the aki rule reads (:meth:`creat`).
        The weights are those of the patients in the periods table (no one else's is read)."""
        recent = self._with_data_in(w, "urine_volume", "end_time")
        u = self._make(
            f"__urine{self._scope(w)}",
            'SELECT e.patient_id, e.start_time AS start, e.end_time AS "end", '
            f"e.value AS volume_ml, e.source FROM events e JOIN pop p USING (patient_id) {recent}"
            "WHERE e.analyte = 'urine_volume' AND e.value IS NOT NULL "
            f"AND e.end_time IS NOT NULL AND e.end_time <= {self.T}",
        )
        weights = self._make(
            f"__weights{self._scope(w)}",
            "SELECT e.patient_id, e.start_time AS t, e.value AS weight_kg FROM events e "
            f"SEMI JOIN {u} q ON q.patient_id = e.patient_id WHERE e.analyte = 'weight' "
            f"AND e.value IS NOT NULL AND e.start_time <= {self.T}",
        )
        return u, weights

    def urine_stages(self, w: Window) -> str:
        """KDIGO urine-output stages per period (kidney.urine) of the :meth:`urine` tables for
        window ``w``."""
        return self._make(f"__urine_stages{self._scope(w)}", urine.urine_stages_sql(*self.urine(w)))

    # -- the aki rule node ----------------------------------------------------------------
    def aki_node(self, comp: Compiler, body: Mapping[str, Any]) -> Verdicts:
        """Compile ``aki: {condition, onset_within, baseline}`` (docs/PROTOCOLS.md)."""
        w = comp.aki_window("aki", body)
        baseline = str(body.get("baseline", "kdigo"))
        hits = self._condition(body["condition"], baseline, w)
        in_w = w.contains("h.t", comp.as_of)
        c_in_w = w.contains("c.t", comp.as_of)
        u, _ = self.urine(w)
        u_in_w = w.contains('x."end"', comp.as_of)
        agg = f"""
            WITH h AS ({hits}),
            hw AS (SELECT patient_id, ev1, max(t) AS t FROM h WHERE {in_w}
                   GROUP BY patient_id, ev1),
            m AS (SELECT patient_id, {ev_list("ev1", "t")} AS evs FROM hw GROUP BY patient_id),
            whys AS (SELECT patient_id, {latest_text("t", "why")} AS why FROM h WHERE {in_w}
                  GROUP BY patient_id),
            d AS (SELECT patient_id FROM {self.creat(w)} c WHERE {c_in_w}
                  UNION SELECT patient_id FROM {u} x WHERE {u_in_w}),
            hits AS (SELECT m.patient_id, m.evs, {latest_text_part("whys.why")} AS why
                   FROM m JOIN whys ON whys.patient_id = m.patient_id)
            SELECT d.patient_id, hits.evs, hits.why FROM d LEFT JOIN hits USING (patient_id)
            UNION ALL SELECT hits.patient_id, hits.evs, hits.why FROM hits
            WHERE hits.patient_id NOT IN (SELECT patient_id FROM d)"""
        return comp._finish(
            agg,
            f"CASE WHEN a.why IS NOT NULL THEN {MET} ELSE {NOT_MET} END",
            f"COALESCE(a.why, 'no AKI criterion met {w.label}')",
            f"COALESCE(a.evs, {EMPTY_EV})",
            UNKNOWN,
            f"no creatinine or urine output {w.label} before screening",
        )

    def _condition(self, cond: Mapping[str, Any], baseline: str, w: Window) -> str:
        """Rows (patient_id, t, why, ev1) where a condition holds (at least those in window
        ``w``, which the caller keeps)."""
        if not isinstance(cond, Mapping) or len(cond) != 1:
            raise ValueError(f"an aki condition has exactly one key, got {cond!r}")
        ((kind, spec),) = cond.items()
        if kind == "any_of":
            return " UNION ALL ".join(f"({self._condition(c, baseline, w)})" for c in spec)
        if kind == "kdigo_stage":
            lo = int(spec.get("min", 1))
            s = self.stages(baseline, w)
            sample = ("baseline", "s.baseline_umol_l", "'baseline sample'")
            creat = self._creat_rows(s, w, f"s.kdigo_stage >= {lo}", "s.kdigo_reason", sample)
            uo = self._urine_rows(
                self.urine_stages(w), "stage_time", "x.reason", f"x.stage >= {lo}"
            )
            return f"({creat}) UNION ALL ({uo})"
        if kind == "creatinine_rise":
            rise = float(spec.get("umol_l", 26.5))
            if float(spec.get("hours", 48)) != 48:
                raise ValueError("creatinine_rise supports the KDIGO 48-hour window only")
            s = self.stages(baseline, w)
            why = (
                f"'creatinine rose ' || {fmt_num('s.min48_umol_l')} || ' -> ' || "
                f"{fmt_num('s.scr')} || ' umol/L (+' || {fmt_num('s.rise48_umol_l')} || "
                f"') within 48 h (rule: >= {rise:g} umol/L)'"
            )
            ref = ("min48", "s.min48_umol_l", "'reference: lowest in the 48 h before'")
            return self._creat_rows(s, w, f"s.rise48_umol_l >= {lit(rise)}", why, ref)
        if kind == "creatinine_ratio":
            op, value = str(spec.get("op", ">=")), float(spec["value"])
            base = str(spec.get("baseline", baseline))
            if base == MIN_48H:
                s = self.stages(baseline, w)
                ratio, ref, src = "s.ratio48", "s.min48_umol_l", "'lowest in 48 h'"
                sample = ("min48", ref, "'reference: lowest in the 48 h before'")
            else:
                s = self.stages(base, w)
                ratio, ref, src = "s.ratio", "s.baseline_umol_l", "s.baseline_source"
                sample = ("baseline", ref, "'baseline sample (' || s.baseline_source || ')'")
            why = (
                f"'creatinine ' || {fmt_num('s.scr')} || ' umol/L = ' || {fmt_num(ratio)} || "
                f"' x baseline ' || {fmt_num(ref)} || ' umol/L (' || {src} || ') (rule: ratio "
                f"{op} {value:g})'"
            )
            return self._creat_rows(s, w, f"{ratio} {OPS[op]} {lit(value)}", why, sample)
        if kind == "urine_output":
            below = float(spec["below_ml_kg_h"])
            hours = float(spec["hours"])
            # runs below the threshold computed once, each duration a filter of them
            all_runs = self._make(
                f"__urine_runs_{below:g}".replace(".", "_") + self._scope(w),
                urine.below_threshold_all_runs_sql(*self.urine(w), below),
            )
            runs = f"({urine.runs_lasting_sql(all_runs, hours)})"
            why = (
                f"'urine output < {below:g} mL/kg/h for ' || {fmt_num('x.hours')} || ' h from ' "
                f"|| strftime(x.start, '%Y-%m-%d %H:%M') || ' (rule: >= {hours:g} h)'"
            )
            return self._urine_rows(runs, "reached_time", why)
        raise ValueError(f"unknown aki condition {kind!r}")

    def _creat_rows(
        self,
        stages: str,
        w: Window,
        where: str,
        why: str,
        ref: tuple[str, str, str] | None = None,
    ) -> str:
        """Hit rows of ``stages`` (made for window ``w``): the result itself and, when ``ref`` =
        (kind, value, label) of its reference sample (kind ``min48``: the 48-h minimum;
        ``baseline``: the baseline when it is one sample; value and label: SQL), that sample as
        a second item."""
        creat = self.creat(w)
        note = (
            f"'baseline ' || COALESCE({fmt_num('s.baseline_umol_l')} || ' umol/L (' || "
            f"s.baseline_source || ')', 'none') || ', KDIGO stage ' || "
            f"CAST(s.kdigo_stage AS VARCHAR) || ', NHS stage ' || CAST(s.nhs_stage AS VARCHAR)"
        )
        note = reported_as_sql(note, "c.cmp", "c.value_text")
        ev = evidence_struct("c.source", "c.code", "s.scr", "'umol/L'", "s.t", note)
        hit = (
            f"SELECT s.patient_id, s.t, {why} AS why, {ev} AS ev1 FROM {stages} s "
            f"JOIN {creat} c ON c.rid = s.rid WHERE {where}"
        )
        if ref is None:
            return hit
        kind, v_col, label = ref
        label = reported_as_sql(label, "r.cmp", "r.value_text")
        ref_ev = evidence_struct("r.source", "r.code", "r.scr", "'umol/L'", "r.t", label)
        # the hit rows' sample times; joining them keeps exactly the hit rows
        sample = aki.window_sample_time_sql(
            f"(SELECT * FROM {stages} s WHERE {where})",
            creat,
            v_col,
            _SAMPLE_FRAME_S[kind],
            bounds=True,
        )
        return (
            f"({hit}) UNION ALL (SELECT s.patient_id, s.t, {why} AS why, {ref_ev} AS ev1 "
            f"FROM {stages} s JOIN ({sample}) x ON x.rid = s.rid "
            f"JOIN {creat} r ON r.patient_id = s.patient_id "
            f"AND r.t = x.sample_t AND r.scr = {v_col})"
        )

    def _urine_rows(self, table: str, time_col: str, why: str, where: str = "TRUE") -> str:
        """Hit rows of urine-output ``table`` (aliased x) where ``where`` holds; ``why`` is
        the SQL of the reason."""
        ev = evidence_struct(
            "'urine output'", "'urine_volume'", "x.hours", "'h'", f"x.{time_col}", why
        )
        return (
            f"SELECT x.patient_id, x.{time_col} AS t, {why} AS why, {ev} AS ev1 "
            f"FROM {table} x WHERE {where}"
        )
