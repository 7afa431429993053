"""AKI staging of creatinine results reported as bounds ("<26", ">900"; kidney.aki, bounds=True).

A stage is never higher than the true values could give: every series with bounds is staged,
then staged again with exact values drawn inside each bound, and no row's KDIGO or NHS stage
may be higher with the bounds than with any such draw. Without any bound the bounded query
gives exactly the rows of the plain one. The named cases pin the rules of the module docstring.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import duckdb
import pyarrow as pa
import pytest
from aki_samples import assert_sample_times
from hypothesis import given, settings
from hypothesis import strategies as st

from trialsieve.kidney.aki import BASELINES, creatinine_stages_sql, creatinine_windows_sql
from trialsieve.screen.kidney_tables import STAGE_COLUMNS

T0 = datetime(2024, 3, 1, 8, 0, 0)
H = 3600
D = 86_400
#: (patient, seconds after T0, value µmol/L, comparator or None)
Row = tuple[str, int, float, str | None]


def _con(rows: list[Row]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.register(
        "creat_in",
        pa.table(
            {
                "rid": pa.array(range(len(rows)), pa.int64()),
                "patient_id": [r[0] for r in rows],
                "t": pa.array([T0 + timedelta(seconds=r[1]) for r in rows], pa.timestamp("us")),
                "scr": pa.array([r[2] for r in rows], pa.float64()),
                "cmp": pa.array([r[3] for r in rows], pa.string()),
            }
        ),
    )
    con.execute("CREATE TABLE creat AS SELECT * FROM creat_in")
    con.execute("CREATE TABLE pat (patient_id VARCHAR, birth_date DATE, sex VARCHAR)")
    con.execute("INSERT INTO pat VALUES ('p0', DATE '1950-05-01', 'female')")
    con.execute("INSERT INTO pat VALUES ('p1', DATE '1980-01-01', 'male')")
    return con


def _stages(rows: list[Row], baseline: str, *, bounds: bool = True) -> list[tuple]:
    con = _con(rows)
    sql = creatinine_stages_sql("creat", patients="pat", baseline=baseline, bounds=bounds)
    return con.execute(sql).fetchall()


def _by_rid(rows: list[Row], baseline: str = "kdigo") -> dict[int, dict]:
    con = _con(rows)
    sql = creatinine_stages_sql("creat", patients="pat", baseline=baseline, bounds=True)
    rel = con.sql(sql)
    return {r[0]: dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()}


def test_below_bound_as_current_result_is_not_staged() -> None:
    """50 then "<100" a day later: 100 would be stage 2 (ratio 2.0); "<100" may be 51."""
    exact = _by_rid([("p0", 0, 50.0, None), ("p0", 24 * H, 100.0, None)])
    assert exact[1]["kdigo_stage"] == 2 and exact[1]["nhs_stage"] == 2
    got = _by_rid([("p0", 0, 50.0, None), ("p0", 24 * H, 100.0, "<")])[1]
    assert (got["kdigo_stage"], got["nhs_stage"], got["kdigo_reason"]) == (0, 0, None)
    assert got["rise48_umol_l"] is None and got["ratio"] is None and got["nhs_ratio"] is None
    assert got["ratio48"] is None
    assert got["baseline_umol_l"] == 50.0  # the baseline itself is known


def test_above_bound_as_current_result_is_staged_with_the_bound() -> None:
    got = _by_rid([("p0", 0, 50.0, None), ("p0", 24 * H, 100.0, ">")])[1]
    assert (got["kdigo_stage"], got["nhs_stage"]) == (2, 2)
    assert got["ratio"] == 2.0 and got["rise48_umol_l"] == 50.0 and got["ratio48"] == 2.0


def test_below_bound_is_a_baseline_at_its_bound() -> None:
    got = _by_rid([("p0", 0, 50.0, "<"), ("p0", 24 * H, 110.0, None)])[1]
    assert (got["baseline_umol_l"], got["baseline_source"], got["kdigo_stage"]) == (
        50.0, "min-7d", 2,
    )  # fmt: skip
    assert got["min48_time"] == T0


def test_above_bound_is_never_a_minimum() -> None:
    """60, ">40" an hour later, 90 a day later: the minimum is 60 (ratio 1.5, stage 1), not 40
    (ratio 2.25, stage 2)."""
    got = _by_rid([("p0", 0, 60.0, None), ("p0", H, 40.0, ">"), ("p0", 24 * H, 90.0, None)])[2]
    assert (got["min48_umol_l"], got["min48_time"], got["baseline_umol_l"]) == (60.0, T0, 60.0)
    assert got["kdigo_stage"] == 1


@pytest.mark.parametrize("baseline", BASELINES)
def test_window_of_above_bounds_only_does_not_fall_back(baseline: str) -> None:
    """A week (or 3 months) holding only ">300" has no known minimum: the baseline must not
    fall back to older, lower results (100 half a year earlier would give stage 3)."""
    rows = [("p0", 0, 100.0, None), ("p0", 180 * D, 300.0, ">"), ("p0", 181 * D, 350.0, None)]
    exact = [("p0", 0, 100.0, None), ("p0", 180 * D, 100.0, None), ("p0", 181 * D, 350.0, None)]
    assert _by_rid(exact, baseline)[2]["kdigo_stage"] == 3  # the fallback would give this
    got = _by_rid(rows, baseline)[2]
    assert got["kdigo_stage"] == 0
    # NHS takes the larger of C1/RV1 and C1/RV2: RV2 (median of days 8-365: 100) is known
    # whatever the week holds, so 3.5x is stage 3 for every true value of ">300"
    assert (got["nhs_stage"], got["nhs_rv2"]) == (3, 100.0)
    assert got["baseline_umol_l"] is None and got["baseline_time"] is None
    assert got["min48_umol_l"] is None and got["nhs_rv1"] is None and got["ratio"] is None
    assert got["rise48_umol_l"] is None and got["ratio48"] is None


def _draw(rng: random.Random, rows: list[Row]) -> list[Row]:
    """The same series with each bound replaced by an exact value it allows."""
    out: list[Row] = []
    for p, t, v, cmp in rows:
        if cmp in ("<", "<="):
            v = v * rng.choice([0.3, 0.6, 0.9, 0.999]) if cmp == "<" or rng.random() < 0.5 else v
        elif cmp in (">", ">="):
            v = v * rng.choice([1.001, 1.4, 2.5, 6.0]) if cmp == ">" or rng.random() < 0.5 else v
        out.append((p, t, v, None))
    return out


_ROW = st.tuples(
    st.sampled_from(["p0", "p1"]),
    st.sampled_from([0, 1, H, 24 * H, 48 * H, 3 * D, 7 * D, 30 * D, 100 * D, 400 * D]),
    st.sampled_from([40.0, 60.0, 90.0, 120.0, 180.0, 250.0, 360.0]),
    st.sampled_from([None, None, None, "<", "<=", ">", ">="]),
)


def _series(draws: list[tuple[str, int, float, str | None]]) -> list[Row]:
    """Cumulative times, so that the offsets are gaps between results."""
    return [(p, sum(d[1] for d in draws[: i + 1]), v, c) for i, (p, _, v, c) in enumerate(draws)]


@settings(max_examples=60, deadline=None)
@given(st.lists(_ROW, min_size=1, max_size=10).map(_series), st.integers(0, 2**32))
def test_stage_never_above_what_the_true_values_give(rows: list[Row], seed: int) -> None:
    rng = random.Random(seed)
    for baseline in BASELINES:
        bounded = _stages(rows, baseline)
        for _ in range(3):
            exact = _stages(_draw(rng, rows), baseline, bounds=False)
            for b, e in zip(bounded, exact, strict=True):
                assert b[0] == e[0]
                # kdigo_stage is column 12, nhs_stage 16 (kidney.aki.OUTPUT_COLUMNS)
                assert b[12] <= e[12], (baseline, b, e)
                assert b[16] <= e[16], (baseline, b, e)


@settings(max_examples=30, deadline=None)
@given(st.lists(_ROW, min_size=1, max_size=10).map(_series))
def test_without_bounds_the_rows_are_those_of_the_plain_query(rows: list[Row]) -> None:
    exact = [(p, t, v, None) for p, t, v, _ in rows]
    for baseline in BASELINES:
        assert _stages(exact, baseline) == _stages(exact, baseline, bounds=False)


@settings(max_examples=30, deadline=None)
@given(st.lists(_ROW, min_size=1, max_size=10).map(_series))
def test_shared_windows_give_the_same_rows(rows: list[Row]) -> None:
    """As the screening runs it: windows once (bounds=True, without the times of the minima),
    staged per baseline, unsorted."""
    con = _con(rows)
    con.execute(f"CREATE TABLE win AS {creatinine_windows_sql('creat', bounds=True, times=False)}")
    cols = ", ".join(STAGE_COLUMNS)
    for baseline in BASELINES:
        full = creatinine_stages_sql("creat", patients="pat", baseline=baseline, bounds=True)
        want = con.execute(f"SELECT {cols} FROM ({full})").fetchall()
        once = creatinine_stages_sql(
            "creat", patients="pat", baseline=baseline, columns=STAGE_COLUMNS,
            ordered=False, windows="win", bounds=True,
        )  # fmt: skip
        assert sorted(con.execute(once).fetchall(), key=lambda r: r[0]) == want


@pytest.mark.parametrize("seed", range(4))
def test_window_sample_times_with_bounds(seed: int) -> None:
    """The screening's reference samples (``window_sample_time_sql``) are those of the ARG_MIN
    columns with bounds too: a result reported as ">b" is never a minimum's sample."""
    rng = random.Random(seed)
    rows = _series([
        (rng.choice(["p0", "p1"]), rng.choice([0, 1, H, 24 * H, 48 * H, 3 * D, 7 * D, 30 * D]),
         rng.choice([40.0, 60.0, 90.0, 120.0, 180.0]), rng.choice([None, None, "<", ">", ">="]))
        for _ in range(60)
    ])  # fmt: skip
    assert_sample_times(_con(rows), bounds=True)
