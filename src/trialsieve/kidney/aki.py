"""Acute kidney injury from serum creatinine: KDIGO 2012 and NHS England (PSA 2014), set-based.

The whole rule set is one SQL ``SELECT`` generated here and run on DuckDB (and, later, on Spark
via sqlglot): every creatinine result of every patient is staged at once with window functions
over epoch seconds; there is no per-patient Python loop.

Sources and the exact rules (issue 2, section 3), thresholds compared in µmol/L:

- **KDIGO 2012** (Clinical Practice Guideline for Acute Kidney Injury, Kidney Int Suppl
  2012;2:1-138, recommendation 2.1.1/2.1.2 and Table 2), evaluated at each result C(t):

  * absolute rule: C(t) − min{C(s): t−48 h ≤ s < t} ≥ 26.5 µmol/L (0.3 mg/dL) → stage 1;
  * baseline B = min{C(s): t−7 d ≤ s < t} if any ("min-7d"), else
    median{C(s): t−365 d ≤ s < t−7 d} ("median-8-365d"), else none;
  * ratio rule: C(t) ≥ 1.5·B → 1, ≥ 2.0·B → 2, ≥ 3.0·B → 3;
  * stage 3 when C(t) ≥ 353.6 µmol/L (4.0 mg/dL) and the absolute rule or ratio ≥ 1.5 holds;
  * stage 3 from the start of renal replacement therapy (RRT) onward: a result taken at or after
    an RRT start and not after that RRT's end (``end`` NULL = ongoing) is stage 3. After an RRT
    period has ended, results are staged by creatinine again (the episode's maximum, in the CLI
    summary, keeps the RRT stage 3).

- **NHS England AKI algorithm** (NHS England Patient Safety Alert NHS/PSA/D/2014/010, algorithm
  specification v1, 2014), at each result C1: no result in the previous 365 d → 0. RV1 = min of
  results in [t−7 d, t); RV2 = median of results in [t−365 d, t−7 d); ratio = the larger of C1/RV1
  and C1/RV2 that exist. Ratio ≥ 1.5: stage 3 if ratio ≥ 3 or C1 > 354 µmol/L, 2 if ratio ≥ 2,
  else 1. Otherwise, C1 − min(results in [t−48 h, t)) > 26 µmol/L → 1, else 0. The NHS stage never
  depends on the selected baseline strategy.

- **Baseline strategy ``lowest-3m-1y-mdrd75``** (NCT06954740 registry record, inclusion 1: "The
  lowest creatinine value obtained in the outpatient department or ward within 3 months, and the
  longest time limit is the creatinine value within 1 year. If there is no such value, the serum
  creatinine can be estimated using the MDRD equation under the assumption that the baseline eGFR
  is 75 ml/min/1.73m²"): B = lowest value in [t − 3 months, t) ("lowest-3m"), else lowest in
  [t − 365 d, t) ("lowest-1y"), else MDRD-175 back-calculated from eGFR 75 with the age at t and
  sex (:func:`trialsieve.kidney.baseline.backcalc_creatinine_sql`, "mdrd75-backcalc"). Three
  months = 3 × 30.4375 d (the mean Gregorian month) = 91.3125 d; calendar months cannot be written
  as a portable RANGE frame. The KDIGO ratio rule uses this B; the absolute 48-h rule is unchanged.

Decisions (documented because they change clinician-facing numbers):

- Time resolution is the second: ``ts`` = floor(epoch seconds of t). Windows are epoch-second
  ``RANGE BETWEEN <n> PRECEDING AND 1 PRECEDING`` frames, so the far edge is included (a sample
  exactly 48 h or 7 d earlier counts) and a sample in the same second as C(t) is *not* earlier
  (s < t): two results in the same second never compare with each other. Results in the same
  hour are distinct results (no hourly binning).
- Medians of an even count are the mean of the two middle values (``MEDIAN``).
- Thresholds are compared multiplicatively (C ≥ k·B rather than C/B ≥ k) with an absolute
  tolerance of :data:`EPS_UMOL_L` (1e-6 µmol/L) in favour of the threshold, so that decimal inputs
  whose binary difference is 26.499999999999993 (e.g. 76.6 − 50.1) meet "≥ 26.5" as a clinician's
  arithmetic does; strict NHS comparisons (> 26, > 354) require more than the tolerance.
- The time of a window minimum (``min48_time``, ``baseline_time``) is that of a sample with the
  minimum value; among equal minima the earliest (``ARG_MIN`` over (value, time)), so that every
  engine reports the same sample.

Results reported as bounds (``bounds=True``: the input has a comparator column ``cmp``, NULL for
an exact value; a FHIR ``Quantity.comparator`` or OMOP operator, docs/STORE.md "Bounds"; ``scr``
is then the bound b). A stage is never higher than the true values could give:

- ``<b`` / ``<=b`` (true value at most b): enters window minima, medians and baselines as b (the
  true minimum or median can only be lower, so a rise or ratio to it can only be larger); as the
  current result C(t) it is not staged (stage 0, ``rise48_umol_l``, ``ratio48``, ``ratio``
  and ``nhs_ratio`` NULL): a rise to a value below b is not known to have happened;
- ``>b`` / ``>=b`` (true value at least b): staged as the current result with b (the true rise is
  at least as large); in minima, medians and baselines it counts as :data:`ABOVE_UMOL_L`, above
  any true value (b could be far below the true value). A window holding only such results thus
  has a minimum no rule meets, shown as NULL (``min48_umol_l``, ``baseline_umol_l``, their times,
  ``ratio``, ``nhs_rv1``, ``nhs_rv2``, ``nhs_ratio``), and the baseline does not fall back to
  the next source (a median of older results could be lower than the true minimum of the week).

Every window aggregate (minimum, median) is monotone in each value, so a result read at its
bound's safe end can only lower a rise or a ratio: the stage shown is never higher than the true
values would give (tested against exact values drawn inside the bounds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import duckdb

BASELINES: Final[tuple[str, ...]] = ("kdigo", "lowest-3m-1y-mdrd75")

#: tolerance (µmol/L) for the threshold comparisons, see the module docstring
EPS_UMOL_L: Final[float] = 1e-6
#: what a result reported as ">b" counts as in window minima, medians and baselines (µmol/L):
#: above any true value, so that they can only be overestimated (see the module docstring); no
#: rule is met against it, and the output shows it as NULL
ABOVE_UMOL_L: Final[float] = 1e12

HOUR_S: Final[int] = 3600
DAY_S: Final[int] = 86400
W48H_S: Final[int] = 48 * HOUR_S
W7D_S: Final[int] = 7 * DAY_S
W365D_S: Final[int] = 365 * DAY_S
#: three mean Gregorian months (3 × 30.4375 d), NCT06954740 "within 3 months"
W3M_S: Final[int] = int(3 * 30.4375 * DAY_S)
#: seconds per mean Julian year, for the age at t
YEAR_S: Final[float] = 365.25 * DAY_S
#: the baselines that are one sample, the lowest result of a window that ends 1 s before the
#: result: ``baseline_source`` -> (its window column, the window's length in seconds). The
#: window columns (:func:`_window_ctes`), the baseline columns (:func:`_baseline_cols`) and the
#: sample-time join (:func:`baseline_sample_frame_sql`) are all made from this table.
SAMPLE_BASELINES: Final[dict[str, tuple[str, int]]] = {
    "min-7d": ("min7", W7D_S), "lowest-3m": ("low3m", W3M_S), "lowest-1y": ("low1y", W365D_S),
}  # fmt: skip

#: KDIGO absolute rise (µmol/L) in 48 h, = 0.3 mg/dL (KDIGO 2012 Table 2)
KDIGO_RISE_UMOL_L: Final[float] = 26.5
#: KDIGO stage-3 absolute level (µmol/L), = 4.0 mg/dL (KDIGO 2012 Table 2)
KDIGO_STAGE3_UMOL_L: Final[float] = 353.6
#: NHS England: C1 − RV > 26 µmol/L (strict)
NHS_RISE_UMOL_L: Final[float] = 26.0
#: NHS England: C1 > 354 µmol/L (strict) with ratio ≥ 1.5 → stage 3
NHS_STAGE3_UMOL_L: Final[float] = 354.0


#: every column of :func:`creatinine_stages_sql`, in order
OUTPUT_COLUMNS: Final[tuple[str, ...]] = (
    "rid", "patient_id", "t", "scr", "min48_umol_l", "min48_time", "rise48_umol_l", "ratio48",
    "baseline_umol_l", "baseline_source", "baseline_time", "ratio", "kdigo_stage",
    "kdigo_reason", "kdigo_by", "rrt_start", "nhs_stage", "nhs_rv1", "nhs_rv2", "nhs_ratio",
)  # fmt: skip


def _backcalc_sql(age: str, female: str) -> str:
    """:func:`trialsieve.kidney.baseline.backcalc_creatinine_sql`, imported when needed (it
    loads numpy and the eGFR equations, which the default baseline does not use)."""
    from trialsieve.kidney.baseline import backcalc_creatinine_sql

    return backcalc_creatinine_sql(age, female)


def _window(frame_from_s: int, frame_to_s: int) -> str:
    """Per-patient epoch-second RANGE frame [t − from, t − to] (both edges included)."""
    return (
        f"(PARTITION BY patient_id ORDER BY ts "
        f"RANGE BETWEEN {frame_from_s} PRECEDING AND {frame_to_s} PRECEDING)"
    )


def _fmt(expr: str, digits: int = 1) -> str:
    """Portable number-to-text for reasons: rounded half-up in decimal arithmetic (a DOUBLE's
    ROUND differs between engines at .5 ties, e.g. 2.195), printed with ``digits`` decimals."""
    return (
        f"CAST(CAST(ROUND(CAST({expr} AS DECIMAL(38, 6)), {digits}) AS DECIMAL(38, {digits})) "
        "AS VARCHAR)"
    )


def _ge(value: str, k: float, base: str) -> str:
    """``value >= k * base`` with the tolerance, NULL-safe (FALSE when ``base`` is NULL)."""
    return f"({base} IS NOT NULL AND {value} >= {k!r} * {base} - {EPS_UMOL_L!r})"


def _windowed_median_ctes(creat: str, w_cols: str, w8_365: str, lowest_cols: str) -> list[str]:
    """CTEs ``lp``, ``cl``, ``w``: the windows, with the day 8-365 MEDIAN at every row."""
    return [
        # patients whose results span more than 7 days (or with a NULL time or id): only
        # they can have a result in [t - 365 d, t - 7 d), so only they need the windowed MEDIAN
        # (read from the input, not from c, so that c stays an inlined CTE)
        f"""lp AS (
  SELECT patient_id FROM {creat} GROUP BY patient_id
  HAVING CAST(FLOOR(EPOCH(MAX(t))) AS BIGINT) - CAST(FLOOR(EPOCH(MIN(t))) AS BIGINT) > {W7D_S}
    OR COUNT(t) < COUNT(*)
)""",
        """cl AS (
  SELECT c.*, (c.patient_id IS NULL OR lp.patient_id IS NOT NULL) AS long_span
  FROM c LEFT JOIN lp ON lp.patient_id = c.patient_id
)""",
        f"""w AS (
  SELECT {w_cols},
    MEDIAN(scr_b) OVER {w8_365} AS med8_365{lowest_cols}
  FROM cl WHERE long_span
  UNION ALL
  SELECT {w_cols},
    CAST(NULL AS DOUBLE) AS med8_365{lowest_cols}
  FROM cl WHERE NOT long_span
)""",
    ]


def _median_ctes(w_cols: str, w8_365: str, lowest_cols: str) -> list[str]:
    """CTEs ``w0``, ``mneed``, ``mmed``, ``w``: the windows, with the day 8-365 median only at
    the rows where it can change ``baseline_umol_l``, ``kdigo_*`` or ``nhs_stage``.

    A windowed MEDIAN over a RANGE frame is the costliest part of the query; a MIN over the
    same frame (``minf``) is cheap. The median M is needed (1) as the KDIGO baseline when there
    is no result in the previous 7 days (``min7`` NULL), and (2) for NHS RV2, only through
    ``scr >= k * M - eps`` for k = 1.5, 2, 3. When ``minf > 0``: M >= minf and floating-point
    products and differences are monotonic, so ``scr >= k * M - eps`` implies
    ``scr >= 1.5 * minf - eps``; a row where that fails (the usual case) has every RV2
    comparison false whatever M is, and gets M = NULL (``nhs_stage`` then tests "no result in
    [t - 365 d, t - 7 d)" as ``minf IS NULL``). The other rows get the exact median from a
    range self-join + GROUP BY MEDIAN (the same quantile interpolation as the window).
    """
    return [
        f"""w0 AS (
  SELECT {w_cols},
    MIN(scr_b) OVER {w8_365} AS minf{lowest_cols}
  FROM c
)""",
        f"""mneed AS (
  SELECT rid, patient_id, ts FROM w0
  WHERE minf IS NOT NULL
    AND (min7 IS NULL OR minf <= 0 OR scr >= 1.5 * minf - {EPS_UMOL_L!r})
)""",
        f"""mmed AS (
  SELECT n.rid, MEDIAN(x.scr_b) AS med8_365
  FROM mneed n JOIN c x
    ON x.patient_id = n.patient_id AND x.ts >= n.ts - {W365D_S} AND x.ts <= n.ts - {W7D_S + 1}
  GROUP BY n.rid
)""",
        """w AS (
  SELECT w0.*, mmed.med8_365 FROM w0 LEFT JOIN mmed ON mmed.rid = w0.rid
)""",
    ]


def _input_cte(creat: str, bounds: bool) -> str:
    """CTE ``c``: the results of ``creat`` with epoch seconds ``ts``, the value a result may
    give to a baseline or window minimum ``scr_b`` and ``below`` (see "Results reported as
    bounds" in the module docstring; without ``bounds`` every result is exact)."""
    if bounds:
        sides = (
            f"CASE WHEN cmp IN ('>', '>=') THEN {ABOVE_UMOL_L!r} ELSE CAST(scr AS DOUBLE) END"
            " AS scr_b,\n    COALESCE(cmp IN ('<', '<='), FALSE) AS below"
        )
    else:
        sides = "CAST(scr AS DOUBLE) AS scr_b, FALSE AS below"
    return f"""c AS (
  SELECT rid, patient_id, t, CAST(scr AS DOUBLE) AS scr,
    CAST(FLOOR(EPOCH(t)) AS BIGINT) AS ts,
    {sides}
  FROM {creat}
)"""


def _window_ctes(
    creat: str, *, lowest: bool, times: bool, all_medians: bool, bounds: bool
) -> list[str]:
    """CTEs ``c`` (:func:`_input_cte`) ... ``w`` (every result with its window
    columns: min48, min7, their times, the day 8-365 median or its lower bound ``minf``, and with
    ``lowest`` the lowest values of 3 months and 1 year with their times)."""
    w48, w8_365 = _window(W48H_S, 1), _window(W365D_S, W7D_S + 1)

    def arg_min(frame: str, name: str) -> str:
        if not times:
            return ""
        return f",\n    ARG_MIN(t, {{'v': scr_b, 't': ts}}) OVER {frame} AS {name}"

    def sample_min(source: str) -> str:
        """The window minimum of a single-sample baseline (:data:`SAMPLE_BASELINES`)."""
        col, length = SAMPLE_BASELINES[source]
        frame = _window(length, 1)
        return f"MIN(scr_b) OVER {frame} AS {col}{arg_min(frame, col + '_time')}"

    lowest_cols = ""
    if lowest:
        lowest_cols = f""",
    {sample_min("lowest-3m")},
    {sample_min("lowest-1y")}"""

    w_cols = f"""rid, patient_id, t, scr, ts, below,
    MIN(scr_b) OVER {w48} AS min48{arg_min(w48, "min48_time")},
    {sample_min("min-7d")}"""
    ctes = [_input_cte(creat, bounds)]
    if all_medians:
        return ctes + _windowed_median_ctes(creat, w_cols, w8_365, lowest_cols)
    return ctes + _median_ctes(w_cols, w8_365, lowest_cols)


def creatinine_windows_sql(creat: str, *, bounds: bool = False, times: bool = True) -> str:
    """SELECT of the window columns of every result of ``creat`` that
    :func:`creatinine_stages_sql` reads as ``windows`` for either baseline strategy with
    ``columns`` that leave out ``nhs_rv2`` and ``nhs_ratio``: computed once, staged twice.
    ``times=False`` leaves out the times of the window minima (the ARG_MINs, ~40 % of the
    query): the stages read from them must then leave out ``min48_time`` and
    ``baseline_time`` (:func:`window_sample_time_sql` finds those times for the rows that need
    them)."""
    ctes = _window_ctes(creat, lowest=True, times=times, all_medians=False, bounds=bounds)
    return "WITH " + ",\n".join(ctes) + "\nSELECT * FROM w"


def baseline_sample_frame_sql(source: str) -> str:
    """SQL: the length (s) of the window whose minimum is the baseline, by the
    ``baseline_source`` column ``source`` (NULL when the baseline is not one sample: a median
    or a back-calculation), for :func:`window_sample_time_sql`."""
    whens = " ".join(f"WHEN '{k}' THEN {n}" for k, (_, n) in SAMPLE_BASELINES.items())
    return f"CASE {source} {whens} END"


def _baseline_cols(samples: Sequence[str], rest: str, rest_source: str, times: bool) -> str:
    """The ``baseline_umol_l``, ``baseline_source`` and ``baseline_time`` columns over the
    window columns ``w``: the first known minimum of the single-sample baselines ``samples``
    (:data:`SAMPLE_BASELINES`, in order of preference), else ``rest`` (SQL), a baseline named
    ``rest_source`` that is not one sample (a median, a back-calculation: no time)."""
    cols = [(source, SAMPLE_BASELINES[source][0]) for source in samples]
    value = " ".join(f"WHEN w.{c} IS NOT NULL THEN w.{c}" for _, c in cols)
    named = " ".join(f"WHEN w.{c} IS NOT NULL THEN '{source}'" for source, c in cols)
    timed = " ".join(
        f"WHEN w.{c} IS NOT NULL THEN {f'w.{c}_time' if times else 'NULL'}" for _, c in cols
    )
    return f"""CASE {value} ELSE {rest} END AS baseline_umol_l,
    CASE {named} WHEN ({rest}) IS NOT NULL THEN '{rest_source}' END AS baseline_source,
    CASE {timed} END AS baseline_time"""


def window_sample_time_sql(
    rows: str, creat: str, value: str, frame_s: str, *, bounds: bool = False
) -> str:
    """SELECT ``rid``, ``sample_t``: the time of the sample behind a window minimum for the
    rows that need it, found by a join instead of an ARG_MIN window over every result (what
    the ``min48_time`` and ``baseline_time`` columns give).

    ``rows``: staged results (alias ``s``: ``rid``, ``patient_id``, ``t``); ``value``: SQL of
    the minimum (``s.min48_umol_l``, ``s.baseline_umol_l``; NULL = none, no row); ``frame_s``:
    SQL of the window's length in seconds (:data:`W48H_S`, or
    :func:`baseline_sample_frame_sql`; NULL = not one sample, no row). The sample is the
    earliest result of ``creat`` (alias ``r``) with that value in [t − frame, t − 1 s] in epoch
    seconds, as ``ARG_MIN(t, {value, ts})`` over the window picks it; with ``bounds`` a result
    reported as ``>b`` is never one (its window value is :data:`ABOVE_UMOL_L`)."""
    ts = "CAST(FLOOR(EPOCH({}.t)) AS BIGINT)"
    above = " AND (r.cmp IS NULL OR r.cmp NOT IN ('>', '>='))" if bounds else ""
    return (
        f"SELECT s.rid, MIN(r.t) AS sample_t FROM {rows} s JOIN {creat} r "
        f"ON r.patient_id = s.patient_id AND r.scr = {value} "
        f"AND {ts.format('r')} BETWEEN {ts.format('s')} - {frame_s} AND {ts.format('s')} - 1"
        f"{above} GROUP BY s.rid"
    )


def creatinine_stages_sql(
    creat: str,
    *,
    patients: str | None = None,
    rrt: str | None = None,
    baseline: str = "kdigo",
    columns: Sequence[str] | None = None,
    ordered: bool = True,
    windows: str | None = None,
    bounds: bool = False,
) -> str:
    """SELECT over relation ``creat`` staging every creatinine result (KDIGO and NHS England).

    ``creat`` columns: ``rid`` BIGINT (input order), ``patient_id`` VARCHAR, ``t`` TIMESTAMP (UTC),
    ``scr`` DOUBLE µmol/L. Returns one row per input row, ordered by ``rid``, with: rid,
    patient_id, t, scr, min48_umol_l, min48_time, rise48_umol_l (scr − min48), ratio48
    (scr / min48, NULL where the rise is), baseline_umol_l,
    baseline_source ('min-7d', 'median-8-365d', 'lowest-3m', 'lowest-1y', 'mdrd75-backcalc' or
    NULL), baseline_time (time of the baseline sample when it is one sample, else NULL), ratio
    (scr / baseline), kdigo_stage INT 0-3, kdigo_reason VARCHAR (NULL at stage 0), kdigo_by
    ('creatinine' or 'rrt'; NULL at stage 0), rrt_start, nhs_stage INT 0-3, nhs_rv1, nhs_rv2,
    nhs_ratio.

    ``patients`` (patient_id, birth_date DATE, sex 'male'/'female') is needed only for the
    ``lowest-3m-1y-mdrd75`` back-calculation (age at t); without it, or for a patient without
    birth date or sex, that fallback baseline is NULL. ``rrt`` (patient_id, start TIMESTAMP,
    "end" TIMESTAMP NULL) gives stage 3 during RRT (see the module docstring).

    ``columns``: return only these output columns (in this order); None = all of them. The
    values are the same; only what the columns need is computed. Without ``min48_time`` and
    ``baseline_time`` the window ARG_MINs are skipped; without ``nhs_rv2`` and ``nhs_ratio`` the
    day 8-365 median is computed only for the rows where it can change a result (see
    :func:`_median_ctes`), which needs non-NULL ``patient_id``, ``t`` and ``scr`` (as loaded by
    :mod:`trialsieve.kidney.aki_inputs`) and unique ``rid``. ``ordered=False`` leaves the rows in
    no particular order (no final sort, for a caller that joins them by ``rid``). ``windows``:
    a relation made by :func:`creatinine_windows_sql` over the same ``creat``, read instead of
    computing the windows again (``columns`` must then leave out ``nhs_rv2`` and ``nhs_ratio``,
    and ``min48_time`` and ``baseline_time`` unless the windows were made with their times).
    ``bounds``: ``creat`` also has ``cmp`` VARCHAR, the comparator of a result reported as a
    bound (``<``, ``<=``, ``>``, ``>=``; NULL = exact), read as the module docstring says.
    """
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline strategy {baseline!r} (one of {', '.join(BASELINES)})")
    if columns is not None:
        unknown = [x for x in columns if x not in OUTPUT_COLUMNS]
        if unknown or not columns:
            raise ValueError(f"unknown output column(s) {unknown!r} (of {OUTPUT_COLUMNS})")
    want = set(OUTPUT_COLUMNS if columns is None else columns)
    all_medians = bool(want & {"nhs_rv2", "nhs_ratio"})
    if windows is not None and all_medians:
        raise ValueError(
            "precomputed windows hold no day 8-365 median at every row: "
            "leave nhs_rv2 and nhs_ratio out of columns"
        )
    times = bool(want & {"min48_time", "baseline_time"})
    eps = repr(EPS_UMOL_L)
    if windows is None:
        lowest = baseline == "lowest-3m-1y-mdrd75"
        ctes = _window_ctes(
            creat, lowest=lowest, times=times, all_medians=all_medians, bounds=bounds
        )
    else:  # the window columns were computed once, for both baselines
        ctes = [_input_cte(creat, bounds), f"w AS (SELECT * FROM {windows})"]
    rv2_known = "g.med8_365 IS NOT NULL" if all_medians else "g.minf IS NOT NULL"

    if rrt is not None:
        ctes.append(
            f"""r AS (
  SELECT c.rid, MIN(x.start) AS rrt_start
  FROM c JOIN {rrt} x
    ON x.patient_id = c.patient_id AND x.start <= c.t
   AND (x."end" IS NULL OR c.t <= x."end")
  GROUP BY c.rid
)"""
        )
        rrt_join = "LEFT JOIN r ON r.rid = w.rid"
        rrt_col = "r.rrt_start"
    else:
        rrt_join = ""
        rrt_col = "CAST(NULL AS TIMESTAMP)"

    if baseline == "kdigo":
        base_sel = _baseline_cols(["min-7d"], "w.med8_365", "median-8-365d", times)
        pat_join = ""
    else:
        if patients is not None:
            age = f"((EPOCH(w.t) - EPOCH(CAST(p.birth_date AS TIMESTAMP))) / {YEAR_S!r})"
            female = "p.sex = 'female'"
            backcalc = (
                f"CASE WHEN p.birth_date IS NOT NULL AND p.sex IN ('male', 'female') "
                f"THEN {_backcalc_sql(age, female)} END"
            )
            pat_join = (
                f"LEFT JOIN (SELECT patient_id, MIN(birth_date) AS birth_date, MIN(sex) AS sex "
                f"FROM {patients} GROUP BY patient_id) p ON p.patient_id = w.patient_id"
            )
        else:
            backcalc = "CAST(NULL AS DOUBLE)"
            pat_join = ""
        base_sel = _baseline_cols(["lowest-3m", "lowest-1y"], backcalc, "mdrd75-backcalc", times)

    ctes.append(
        f"""b AS (
  SELECT w.rid, w.patient_id, w.t, w.scr, w.below, w.min48,{" w.min48_time," if times else ""}
    w.min7, w.med8_365,{"" if all_medians else " w.minf,"}
    {rrt_col} AS rrt_start,
    {base_sel}
  FROM w {rrt_join} {pat_join}
)"""
    )

    abs_rule = (
        "(NOT b.below AND b.min48 IS NOT NULL"
        f" AND b.scr - b.min48 >= {KDIGO_RISE_UMOL_L!r} - {eps})"
    )
    ratio_stage = (
        "CASE WHEN b.below THEN 0"
        f" WHEN {_ge('b.scr', 3.0, 'b.baseline_umol_l')} THEN 3"
        f" WHEN {_ge('b.scr', 2.0, 'b.baseline_umol_l')} THEN 2"
        f" WHEN {_ge('b.scr', 1.5, 'b.baseline_umol_l')} THEN 1 ELSE 0 END"
    )
    ctes.append(
        f"""f AS (
  SELECT b.*,
    {abs_rule} AS abs_rule,
    {ratio_stage} AS ratio_stage
  FROM b
)"""
    )
    ctes.append(
        f"""g AS (
  SELECT f.*,
    (f.scr >= {KDIGO_STAGE3_UMOL_L!r} - {eps} AND (f.abs_rule OR f.ratio_stage >= 1)) AS high_rule,
    GREATEST(CASE WHEN f.abs_rule THEN 1 ELSE 0 END, f.ratio_stage,
      CASE WHEN f.scr >= {KDIGO_STAGE3_UMOL_L!r} - {eps} AND (f.abs_rule OR f.ratio_stage >= 1)
           THEN 3 ELSE 0 END) AS creat_stage
  FROM f
)"""
    )

    def nhs_ge(k: float) -> str:
        return f"({_ge('g.scr', k, 'g.min7')} OR {_ge('g.scr', k, 'g.med8_365')})"

    # no result in [t - 365 d, t) <=> both RV1 (min over [t - 7 d, t)) and RV2 (median over
    # [t - 365 d, t - 7 d)) are NULL: the two frames partition the 365-day frame
    nhs_stage = f"""CASE WHEN g.below OR (g.min7 IS NULL AND NOT ({rv2_known})) THEN 0
      WHEN {nhs_ge(1.5)} THEN
        CASE WHEN {nhs_ge(3.0)} OR g.scr > {NHS_STAGE3_UMOL_L!r} + {eps} THEN 3
             WHEN {nhs_ge(2.0)} THEN 2 ELSE 1 END
      WHEN g.min48 IS NOT NULL AND g.scr - g.min48 > {NHS_RISE_UMOL_L!r} + {eps} THEN 1
      ELSE 0 END"""
    reason = f"""NULLIF(CONCAT_WS('; ',
      CASE WHEN g.rrt_start IS NOT NULL
           THEN CONCAT('RRT started ', CAST(g.rrt_start AS VARCHAR), ' (stage 3)') END,
      CASE WHEN g.high_rule
           THEN CONCAT('creatinine ', {_fmt("g.scr")}, ' umol/L >= 353.6 with ',
                       CASE WHEN g.ratio_stage >= 1 THEN 'ratio >= 1.5' ELSE 'acute rise' END,
                       ' (stage 3)') END,
      CASE WHEN g.ratio_stage >= 1
           THEN CONCAT('ratio ', {_fmt("g.scr / g.baseline_umol_l", 2)}, ' to baseline ',
                       {_fmt("g.baseline_umol_l")}, ' (', g.baseline_source, ') (stage ',
                       CAST(g.ratio_stage AS VARCHAR), ')') END,
      CASE WHEN g.abs_rule
           THEN CONCAT('rise ', {_fmt("g.scr - g.min48")}, ' umol/L in 48 h (stage 1)') END
    ), '')"""

    def known(value: str, col: str | None = None) -> str:
        """``col`` (default ``value``) where ``value`` is not the stand-in of results reported
        above a bound (:data:`ABOVE_UMOL_L`), else NULL."""
        if not bounds:
            return col or value
        return f"CASE WHEN {value} < {ABOVE_UMOL_L!r} THEN {col or value} END"

    ctes.append(
        f"""s AS (
  SELECT g.rid, g.patient_id, g.t, g.scr,
    {known("g.min48")} AS min48_umol_l,
    {known("g.min48", "g.min48_time") if times else "CAST(NULL AS TIMESTAMP)"} AS min48_time,
    CASE WHEN NOT g.below THEN g.scr - {known("g.min48")} END AS rise48_umol_l,
    CASE WHEN NOT g.below THEN g.scr / {known("g.min48")} END AS ratio48,
    {known("g.baseline_umol_l")} AS baseline_umol_l, g.baseline_source,
    {known("g.baseline_umol_l", "g.baseline_time")} AS baseline_time,
    CASE WHEN NOT g.below THEN g.scr / {known("g.baseline_umol_l")} END AS ratio,
    CAST(CASE WHEN g.rrt_start IS NOT NULL THEN 3 ELSE g.creat_stage END AS INTEGER)
      AS kdigo_stage,
    {reason} AS kdigo_reason,
    CASE WHEN g.creat_stage >= 3 OR (g.rrt_start IS NULL AND g.creat_stage >= 1)
         THEN 'creatinine' WHEN g.rrt_start IS NOT NULL THEN 'rrt' END AS kdigo_by,
    g.rrt_start,
    CAST({nhs_stage} AS INTEGER) AS nhs_stage,
    {known("g.min7")} AS nhs_rv1, {known("g.med8_365")} AS nhs_rv2,
    CASE WHEN NOT g.below
         THEN GREATEST(g.scr / {known("g.min7")}, g.scr / {known("g.med8_365")}) END AS nhs_ratio
  FROM g
)"""
    )
    sel = "*" if columns is None else ", ".join(columns)
    order = " ORDER BY rid" if ordered else ""
    return "WITH " + ",\n".join(ctes) + f"\nSELECT {sel} FROM s{order}"


def stage_creatinine(
    con: duckdb.DuckDBPyConnection,
    creat: str,
    *,
    patients: str | None = None,
    rrt: str | None = None,
    baseline: str = "kdigo",
) -> duckdb.DuckDBPyRelation:
    """Run :func:`creatinine_stages_sql` on ``con`` (relations are table or view names)."""
    return con.sql(creatinine_stages_sql(creat, patients=patients, rrt=rrt, baseline=baseline))
