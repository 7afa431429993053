"""KDIGO urine-output criteria for AKI, as set-based SQL (DuckDB today, Spark via sqlglot).

Source: KDIGO Clinical Practice Guideline for Acute Kidney Injury, Kidney Int Suppl 2012;2:1-138,
Table 2 (staging of AKI), urine-output column:

- stage 1: < 0.5 mL/kg/h for 6-12 h (here: for >= 6 consecutive hours);
- stage 2: < 0.5 mL/kg/h for >= 12 h;
- stage 3: < 0.3 mL/kg/h for >= 24 h, or anuria for >= 12 h.

Only SQL text is produced here (one source of truth, no per-patient Python loop); the caller runs
it, e.g. ``con.execute(urine_stages_sql("urine", "weights")).fetchall()``. ``urine`` and
``weights`` are relation names (table, view) or a subquery (``SELECT ...`` is wrapped in
parentheses). Columns expected:

- ``urine``: ``patient_id``, ``"start"`` TIMESTAMP, ``"end"`` TIMESTAMP, ``volume_ml`` DOUBLE —
  the urine collected over the period ``[start, end]`` (one row per distinct measurement; several
  drains/catheters are several rows). Other columns are ignored unless named in ``carry``.
- ``weights``: ``patient_id``, ``t`` TIMESTAMP, ``weight_kg`` DOUBLE.

Decisions (what "rate", "consecutive" and "unknown" mean here):

1. **Rate of a period** = volume / period length (h) / weight, with the most recent weight charted
   at or before the period start (several weights at that same instant: their mean). Weights that
   are NULL or <= 0 are ignored. No weight -> rate unknown (NULL), never a guessed weight.
   Exception: a charted 0 mL period has rate 0 for any body weight, so it is known (0) even
   without a weight; charted 0 mL is anuria, not missing data.
2. **Invalid periods** (volume NULL or < 0, or ``end <= start``) have unknown rate; zero-length
   periods cover no time at all.
3. **Timeline.** Each patient's time is cut at every period start and end into elementary
   segments. A segment's urine flow is the sum of the flows (mL/kg/h, volume spread evenly over
   its period) of all periods covering it, so overlapping periods (e.g. a Foley catheter and a
   nephrostomy charted separately) add up instead of each looking oliguric on its own, and
   overlapping periods are contiguous by construction. A segment covered by no period is a gap in
   charting: unknown, not zero. A segment with any covering period of unknown rate is unknown.
   Without overlaps the segments are exactly the periods, i.e. the plain per-period reading.
   Computed with a sweep line (running sums over period starts/ends), not a range join.
4. **Below threshold**: rate rounded to 9 decimals is strictly below the threshold (0.5 exactly is
   not < 0.5; rounding removes float noise such as 0.49999999999). **Anuric**: every covering
   period charted 0 mL.
5. **Consecutive** = segments that touch (next start == previous end). A gap, an unknown segment
   or a segment not meeting the threshold ends the run. A run (maximal island, found with
   LAG + running SUM: gaps-and-islands) qualifies when it lasts >= the required hours; the
   criterion is reached at ``start + required hours`` (``stage_time`` / ``reached_time``), which
   assumes even flow within a period: a 6-h collection is only known at its end.
6. **Reading of "for 6 h"**: every part of the run is below the threshold (the per-hour reading of
   Table 2), not the mean over a sliding 6-h window (as e.g. the MIMIC-code ``kdigo_uo`` concept);
   the two differ when one hour is high and its neighbours low. Exact duplicate rows (the same
   period charted twice) are two sources and add up: deduplicate upstream (store ``event_id``).

Portability: only CTEs, joins, GROUP BY, ``LAG``/``LEAD``/``ROW_NUMBER``/``MAX``/``SUM`` windows,
``CASE``, ``ROUND``, ``EPOCH`` (sqlglot -> Spark ``UNIX_TIMESTAMP``) and ``INTERVAL 'n' SECOND``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

#: KDIGO 2012 Table 2 thresholds (mL/kg/h) and durations (h)
OLIGURIA_RATE: Final[float] = 0.5
SEVERE_OLIGURIA_RATE: Final[float] = 0.3
ROUND_DECIMALS: Final[int] = 9

RATE_COLUMNS: Final[tuple[str, ...]] = (
    "uid",
    "patient_id",
    "start",
    "end",
    "hours",
    "volume_ml",
    "weight_kg",
    "weight_time",
    "rate_ml_kg_h",
    "anuric",
)
RUN_COLUMNS: Final[tuple[str, ...]] = (
    "patient_id",
    "start",
    "end",
    "hours",
    "reached_time",
    "max_rate_ml_kg_h",
)
STAGE_COLUMNS: Final[tuple[str, ...]] = (
    "patient_id",
    "start",
    "end",
    "hours",
    "stage",
    "stage_time",
    "criterion",
    "reason",
)


@dataclass(frozen=True)
class UrineCriterion:
    """One urine-output row of KDIGO 2012 Table 2."""

    code: str
    stage: int
    below_ml_kg_h: float | None  # None: anuria (0 mL charted)
    min_hours: float
    text: str  # reason prefix, completed with " for X h (stage N)"


#: the four KDIGO 2012 Table 2 urine-output criteria, in stage order
CRITERIA: Final[tuple[UrineCriterion, ...]] = (
    UrineCriterion("<0.5x6h", 1, OLIGURIA_RATE, 6.0, "urine output < 0.5 mL/kg/h"),
    UrineCriterion("<0.5x12h", 2, OLIGURIA_RATE, 12.0, "urine output < 0.5 mL/kg/h"),
    UrineCriterion("<0.3x24h", 3, SEVERE_OLIGURIA_RATE, 24.0, "urine output < 0.3 mL/kg/h"),
    UrineCriterion("anuria12h", 3, None, 12.0, "anuria (0 mL)"),
)


def _rel(relation: str) -> str:
    """A relation usable after FROM: a name as is, a bare query in parentheses."""
    text = relation.strip()
    head = text.split(None, 1)[0].upper() if text else ""
    if head in {"SELECT", "WITH", "FROM", "VALUES"}:
        return f"({text})"
    return text


def _ident(name: str) -> str:
    """Quote a column name for the carried columns (reject names that cannot be quoted)."""
    if not name or '"' in name:
        raise ValueError(f"invalid column name: {name!r}")
    return f'"{name}"'


def _whole_seconds(hours: float) -> int:
    """``hours`` as a whole number of seconds (interval literals are whole seconds)."""
    if not math.isfinite(hours) or hours <= 0:
        raise ValueError(f"hours must be a positive number, got {hours!r}")
    secs = round(hours * 3600.0)
    if abs(secs - hours * 3600.0) > 1e-6:
        raise ValueError(f"hours must be a whole number of seconds, got {hours!r}")
    return secs


def _rates_ctes(urine: str, weights: str, carry: Sequence[str], *, uid: bool = True) -> str:
    """CTEs ``_u`` (input + uid), ``_wsel`` (each weight's validity) and ``_rates`` (one row per
    period).

    The weight is an as-of join written portably: the weights averaged per instant (several
    charted at the same instant, so their times are unique per patient), each valid from its
    time until the patient's next weight (``LEAD``); a period takes the one weight valid at its
    start, i.e. the latest at or before it: one join, no grouping of the periods
    (``tests/kidney/test_urine.py`` checks it against a plain-Python reference). ``uid`` (a
    ROW_NUMBER, one more sort) only when asked for.
    """
    taken = set(RATE_COLUMNS)
    for c in carry:
        if c in taken:
            raise ValueError(f"carried column {c!r} collides with an output column")
    extra_sel = "".join(f", {_ident(c)}" for c in carry)
    extra_ord = "".join(f", {_ident(c)}" for c in carry)
    extra_out = "".join(f", u.{_ident(c)}" for c in carry)
    uid_col = (
        f"""ROW_NUMBER() OVER (
            PARTITION BY patient_id ORDER BY "start", "end", volume_ml{extra_ord}
        ) AS uid,
        """
        if uid
        else ""
    )
    return f"""_u AS (
    SELECT
        {uid_col}patient_id, "start", "end", CAST(volume_ml AS DOUBLE) AS volume_ml{extra_sel}
    FROM {_rel(urine)}
),
_w AS (
    SELECT patient_id, t, CAST(weight_kg AS DOUBLE) AS weight_kg
    FROM {_rel(weights)}
    WHERE t IS NOT NULL AND weight_kg IS NOT NULL AND weight_kg > 0
),
_wagg AS (
    SELECT patient_id, t, AVG(weight_kg) AS weight_kg
    FROM _w
    GROUP BY patient_id, t
),
_wsel AS (
    SELECT patient_id, t AS weight_time, weight_kg,
        LEAD(t) OVER (PARTITION BY patient_id ORDER BY t) AS next_time
    FROM _wagg
),
_rates AS (
    SELECT
        {"u.uid, " if uid else ""}u.patient_id, u."start", u."end",
        (EPOCH(u."end") - EPOCH(u."start")) / 3600.0 AS hours,
        u.volume_ml, ws.weight_kg, ws.weight_time,
        CASE
            WHEN u.volume_ml IS NULL OR u.volume_ml < 0 OR u."start" IS NULL
                OR u."end" IS NULL OR u."end" <= u."start" THEN NULL
            WHEN u.volume_ml = 0 THEN 0.0
            WHEN ws.weight_kg IS NULL THEN NULL
            ELSE u.volume_ml * 3600.0
                / (EPOCH(u."end") - EPOCH(u."start")) / ws.weight_kg
        END AS rate_ml_kg_h,
        CASE
            WHEN u.volume_ml IS NULL OR u.volume_ml < 0 OR u."start" IS NULL
                OR u."end" IS NULL OR u."end" <= u."start" THEN NULL
            ELSE u.volume_ml = 0
        END AS anuric{extra_out}
    FROM _u AS u
    LEFT JOIN _wsel AS ws ON ws.patient_id = u.patient_id AND ws.weight_time <= u."start"
        AND (u."start" < ws.next_time OR ws.next_time IS NULL)
)"""


def urine_rates_sql(urine: str, weights: str, *, carry: Sequence[str] = ()) -> str:
    """One row per urine period with its weight-based rate (KDIGO 2012 Table 2 units, mL/kg/h).

    Columns: ``uid`` BIGINT (1-based row number within the patient, ordered by start, end,
    volume_ml, carried columns: ``(patient_id, uid)`` is the key; partitioned so that Spark
    need not sort all rows in one task),
    ``patient_id``, ``start``, ``end``, ``hours``, ``volume_ml``, ``weight_kg`` (most recent at or
    before ``start``; NULL when none), ``weight_time``, ``rate_ml_kg_h`` (NULL when no weight,
    except 0 for a charted 0 mL; NULL for an invalid period), ``anuric`` BOOLEAN (volume = 0;
    NULL for an invalid period), then the ``carry`` columns (e.g. ``("source",)``) as given.
    """
    cols = ", ".join(_ident(c) for c in (*RATE_COLUMNS, *carry))
    return f"WITH {_rates_ctes(urine, weights, carry)}\nSELECT {cols} FROM _rates"


#: the three per-point counts of the sweep line (periods; of unknown rate; with non-zero volume)
#: travel packed in one BIGINT, ``_COUNT_BITS`` bits each: one running SUM instead of three
_COUNT_BITS: Final[int] = 21
_C1: Final[int] = 1 << _COUNT_BITS
_C2: Final[int] = 1 << (2 * _COUNT_BITS)


def _segments_ctes() -> str:
    """CTE ``_cov``: the patient's elementary segments with their summed flow, after ``_rates``.

    A sweep line instead of a range join (which would be quadratic per patient): every valid
    period adds its rate, a count, an unknown-rate count and a non-zero-volume count at its start
    and removes them at its end; running sums over the change points give each segment's state.
    Running float sums can leave residues such as 1e-17; the rate is rounded to
    ``ROUND_DECIMALS`` decimals, counts are exact integers. The three counts are packed in one
    integer (count + unknown * 2^21 + non-zero * 2^42): the running sum of the packed deltas is
    the packed running counts, each in [0, 2^21) (fewer than 2,097,152 periods of a patient
    overlap at any instant), so one running SUM gives all three exactly.
    """
    return f"""_valid AS (
    SELECT patient_id, "start", "end", rate_ml_kg_h, anuric FROM _rates
    WHERE "start" IS NOT NULL AND "end" IS NOT NULL AND "end" > "start"
),
_delta AS (
    SELECT patient_id, "start" AS t,
        COALESCE(rate_ml_kg_h, 0.0) AS d_rate,
        CAST(1 + CASE WHEN rate_ml_kg_h IS NULL THEN {_C1} ELSE 0 END
            + CASE WHEN anuric THEN 0 ELSE {_C2} END AS BIGINT) AS d_counts
    FROM _valid
    UNION ALL
    SELECT patient_id, "end" AS t,
        -COALESCE(rate_ml_kg_h, 0.0) AS d_rate,
        CAST(-1 - CASE WHEN rate_ml_kg_h IS NULL THEN {_C1} ELSE 0 END
            - CASE WHEN anuric THEN 0 ELSE {_C2} END AS BIGINT) AS d_counts
    FROM _valid
),
_pts AS (
    SELECT patient_id, t, SUM(d_rate) AS d_rate, CAST(SUM(d_counts) AS BIGINT) AS d_counts
    FROM _delta
    GROUP BY patient_id, t
),
_state AS (
    SELECT patient_id, t AS s0,
        LEAD(t) OVER (PARTITION BY patient_id ORDER BY t) AS s1,
        SUM(d_rate) OVER (
            PARTITION BY patient_id ORDER BY t
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS rate_raw,
        CAST(SUM(d_counts) OVER (
            PARTITION BY patient_id ORDER BY t
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS BIGINT) AS counts
    FROM _pts
),
_cov AS (
    SELECT patient_id, s0, s1,
        CASE WHEN counts % {_C2} < {_C1} THEN ROUND(rate_raw, {ROUND_DECIMALS}) END AS rate,
        CASE WHEN counts < {_C2} THEN 1 ELSE 0 END AS anuric
    FROM _state
    WHERE s1 IS NOT NULL AND counts % {_C1} > 0
)"""


def _runs_ctes(predicate: str, min_seconds: int, name: str) -> str:
    """Gaps-and-islands over ``_cov`` rows meeting ``predicate``: CTE ``name``, qualifying runs."""
    return f"""{name}_sat AS (
    SELECT patient_id, s0, s1, rate FROM _cov WHERE {predicate}
),
{name}_mark AS (
    SELECT patient_id, s0, s1, rate,
        CASE WHEN LAG(s1) OVER (PARTITION BY patient_id ORDER BY s0) = s0
            THEN 0 ELSE 1 END AS new_run
    FROM {name}_sat
),
{name}_grp AS (
    SELECT patient_id, s0, s1, rate,
        SUM(new_run) OVER (
            PARTITION BY patient_id ORDER BY s0
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS run_id
    FROM {name}_mark
),
{name} AS (
    SELECT patient_id, MIN(s0) AS "start", MAX(s1) AS "end", MAX(rate) AS max_rate_ml_kg_h
    FROM {name}_grp
    GROUP BY patient_id, run_id
    HAVING EPOCH(MAX(s1)) - EPOCH(MIN(s0)) >= {min_seconds}
)"""


def _criterion_predicate(below_ml_kg_h: float | None) -> str:
    if below_ml_kg_h is None:
        return "anuric = 1"
    if not math.isfinite(below_ml_kg_h) or below_ml_kg_h <= 0:
        raise ValueError(f"threshold must be a positive number, got {below_ml_kg_h!r}")
    return f"rate IS NOT NULL AND rate < {float(below_ml_kg_h)!r}"


def below_threshold_runs_sql(
    urine: str, weights: str, below_ml_kg_h: float, min_hours: float
) -> str:
    """Maximal runs of urine output strictly below ``below_ml_kg_h`` lasting >= ``min_hours``.

    For protocol rules such as "urine output < 0.5 mL/kg/h over 12 h" (NCT04194671) or
    "< 0.5 mL/kg/h for more than 6 h"; the KDIGO 2012 Table 2 semantics of the module docstring
    (timeline, gaps, unknown weight). Columns: ``patient_id``, ``start``, ``end``, ``hours``
    (DOUBLE), ``reached_time`` (= start + min_hours), ``max_rate_ml_kg_h`` (highest segment rate
    in the run). A rule that needs "more than" 6 h strictly can filter ``hours > 6``.
    """
    return runs_lasting_sql(f"({below_threshold_all_runs_sql(urine, weights, below_ml_kg_h)})",
                            min_hours)  # fmt: skip


def below_threshold_all_runs_sql(urine: str, weights: str, below_ml_kg_h: float) -> str:
    """Every maximal run of urine output strictly below ``below_ml_kg_h``, however short:
    ``patient_id``, ``start``, ``end``, ``max_rate_ml_kg_h``. A run is maximal whatever the
    duration asked for, so rules with the same threshold and different hours share these runs
    (:func:`runs_lasting_sql` keeps those of each duration)."""
    pred = _criterion_predicate(below_ml_kg_h)
    return f"""WITH {_rates_ctes(urine, weights, (), uid=False)},
{_segments_ctes()},
{_runs_ctes(pred, 0, "_runs")}
SELECT patient_id, "start", "end", max_rate_ml_kg_h FROM _runs"""


def runs_lasting_sql(runs: str, min_hours: float) -> str:
    """The runs of relation ``runs`` (:func:`below_threshold_all_runs_sql`) lasting at least
    ``min_hours``, in the columns of :func:`below_threshold_runs_sql`."""
    secs = _whole_seconds(min_hours)
    return f"""SELECT patient_id, "start", "end",
    (EPOCH("end") - EPOCH("start")) / 3600.0 AS hours,
    "start" + INTERVAL '{secs}' SECOND AS reached_time,
    max_rate_ml_kg_h
FROM {runs} r
WHERE EPOCH("end") - EPOCH("start") >= {secs}"""


def urine_stages_sql(urine: str, weights: str) -> str:
    """KDIGO 2012 Table 2 urine-output episodes: one row per maximal run per criterion.

    Columns: ``patient_id``, ``start``, ``end``, ``hours`` DOUBLE, ``stage`` INT (1..3),
    ``stage_time`` (start + the criterion's hours: when the run first lasted long enough),
    ``criterion`` ('<0.5x6h', '<0.5x12h', '<0.3x24h', 'anuria12h') and ``reason``, e.g.
    ``urine output < 0.5 mL/kg/h for 14.0 h (stage 2)``. A run of 14 h below 0.5 gives two rows
    (stage 1 at start + 6 h, stage 2 at start + 12 h); the patient's stage at time T is the
    highest ``stage`` with ``stage_time <= T``. Criteria with the same threshold (< 0.5 for 6 h
    and for 12 h) share one gaps-and-islands pass (runs of at least the shorter duration), each
    keeping the runs that last its own hours.
    """
    preds: dict[str, int] = {}  # predicate -> shortest duration (s) among its criteria
    for c in CRITERIA:
        pred, secs = _criterion_predicate(c.below_ml_kg_h), _whole_seconds(c.min_hours)
        preds[pred] = min(secs, preds.get(pred, secs))
    names = {pred: f"_c{i}" for i, pred in enumerate(preds)}
    parts = [_runs_ctes(pred, secs, names[pred]) for pred, secs in preds.items()]
    selects: list[str] = []
    for c in CRITERIA:
        pred, secs = _criterion_predicate(c.below_ml_kg_h), _whole_seconds(c.min_hours)
        keep = f'\nWHERE EPOCH("end") - EPOCH("start") >= {secs}' if secs > preds[pred] else ""
        hours = '(EPOCH("end") - EPOCH("start")) / 3600.0'
        selects.append(
            f"""SELECT patient_id, "start", "end", {hours} AS hours,
    CAST({c.stage} AS INTEGER) AS stage,
    "start" + INTERVAL '{secs}' SECOND AS stage_time,
    '{c.code}' AS criterion,
    CONCAT('{c.text} for ',
        CAST(CAST(ROUND({hours}, 1) AS DECIMAL(10, 1)) AS VARCHAR),
        ' h (stage {c.stage})') AS reason
FROM {names[pred]}{keep}"""
        )
    union = "\nUNION ALL\n".join(selects)
    runs = ",\n".join(parts)
    return f"""WITH {_rates_ctes(urine, weights, (), uid=False)},
{_segments_ctes()},
{runs}
{union}"""
