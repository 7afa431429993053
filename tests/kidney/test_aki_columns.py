"""``creatinine_stages_sql(columns=...)``: a subset of the output columns, with the same values.

Without ``nhs_rv2``/``nhs_ratio`` the day 8-365 median is computed only where it can change a
result, and without ``min48_time``/``baseline_time`` the ARG_MIN windows are skipped: every
requested column must still equal the full query's, row for row, on series built to hit the
edges (same-second results, exact 7-day and 365-day edges, even-count medians, thresholds).
The same holds when the windows are computed once for both baselines (``windows=``, as the
screening does) and the rows come unsorted (``ordered=False``).
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

from trialsieve.kidney.aki import (
    BASELINES,
    OUTPUT_COLUMNS,
    creatinine_stages_sql,
    creatinine_windows_sql,
)
from trialsieve.screen.kidney_tables import STAGE_COLUMNS

T0 = datetime(2024, 3, 1, 8, 0, 0)
#: the columns ``trialsieve aki`` asks for (trialsieve.cli.aki.STAGED_COLUMNS)
CLI_COLUMNS = (
    "rid", "patient_id", "t", "scr", "kdigo_stage", "kdigo_reason", "kdigo_by",
    "baseline_umol_l", "baseline_source", "nhs_stage",
)  # fmt: skip
#: offsets (s) that land on the window edges: 48 h, 7 d (+/- 1 s), 365 d
EDGES = (0, 1, 3600, 172_800, 604_799, 604_800, 604_801, 31_536_000, 31_536_001)


def _con(rows: list[tuple[str, int, float]]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    tbl = pa.table(
        {
            "rid": pa.array(range(len(rows)), type=pa.int64()),
            "patient_id": [r[0] for r in rows],
            "t": pa.array([T0 + timedelta(seconds=r[1]) for r in rows], type=pa.timestamp("us")),
            "scr": pa.array([r[2] for r in rows], type=pa.float64()),
        }
    )
    con.register("creat_in", tbl)
    con.execute("CREATE TABLE creat AS SELECT * FROM creat_in")
    con.execute('CREATE TABLE rrt (patient_id VARCHAR, start TIMESTAMP, "end" TIMESTAMP)')
    con.execute("INSERT INTO rrt VALUES ('p1', ?, ?)", [T0 + timedelta(days=20), None])
    con.execute("CREATE TABLE pat (patient_id VARCHAR, birth_date DATE, sex VARCHAR)")
    con.execute("INSERT INTO pat VALUES ('p0', DATE '1950-05-01', 'female')")
    return con


def assert_same(rows: list[tuple[str, int, float]], columns: tuple[str, ...]) -> None:
    con = _con(rows)
    shared = "rid" in columns and not {"nhs_rv2", "nhs_ratio"} & set(columns)
    if shared:  # the times of the window minima only when a column shows them (as screening)
        times = bool({"min48_time", "baseline_time"} & set(columns))
        con.execute(f"CREATE TABLE win AS {creatinine_windows_sql('creat', times=times)}")
    for baseline in BASELINES:
        for rrt, pat in ((None, None), ("rrt", "pat")):
            full = creatinine_stages_sql("creat", patients=pat, rrt=rrt, baseline=baseline)
            part = creatinine_stages_sql(
                "creat", patients=pat, rrt=rrt, baseline=baseline, columns=columns
            )
            want = con.execute(f"SELECT {', '.join(columns)} FROM ({full})").fetchall()
            got = con.execute(part).fetchall()
            assert got == want, (baseline, rrt)
            if shared:  # windows computed once, rows unsorted: the same rows
                once = creatinine_stages_sql(
                    "creat", patients=pat, rrt=rrt, baseline=baseline, columns=columns,
                    ordered=False, windows="win",
                )  # fmt: skip
                rid = columns.index("rid")
                got = sorted(con.execute(once).fetchall(), key=lambda r: r[rid])
                assert got == want, (baseline, rrt, "windows")


def series(rng: random.Random, n_patients: int) -> list[tuple[str, int, float]]:
    rows: list[tuple[str, int, float]] = []
    for p in range(n_patients):
        t = rng.choice([0, 10**6])
        base = rng.choice([40.0, 80.0, 100.0, 300.0])
        for _ in range(rng.randint(1, 25)):
            t += rng.choice([0, 0, *EDGES, rng.randint(1, 40 * 86_400)])
            scr = rng.choice([base, base * 1.5, base * 2, base * 3, base + 26.5, 354.0, 353.6,
                              round(base * rng.uniform(0.5, 4), 1)])  # fmt: skip
            rows.append((f"p{p}", t, scr))
    rng.shuffle(rows)
    return rows


@pytest.mark.parametrize(
    "columns", [CLI_COLUMNS, STAGE_COLUMNS, OUTPUT_COLUMNS, ("rid", "nhs_stage")]
)
@pytest.mark.parametrize("seed", range(6))
def test_subset_equals_full_query(seed: int, columns: tuple[str, ...]) -> None:
    assert_same(series(random.Random(seed), 30), columns)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["p0", "p1"]),
            st.sampled_from([0, *EDGES, 2 * 604_800, 400 * 86_400]),
            st.sampled_from([50.0, 75.0, 100.0, 112.5, 150.0, 200.0, 300.0, 354.0]),
        ),
        max_size=14,
    ).map(lambda xs: [(p, sum(x[1] for x in xs[: i + 1]), v) for i, (p, _, v) in enumerate(xs)])
)
def test_subset_equals_full_query_generated(rows: list[tuple[str, int, float]]) -> None:
    assert_same(rows, CLI_COLUMNS)
    assert_same(rows, STAGE_COLUMNS)


@pytest.mark.parametrize("seed", range(6))
def test_window_sample_times_equal_the_arg_min_columns(seed: int) -> None:
    assert_sample_times(_con(series(random.Random(seed), 30)))


def test_unknown_or_empty_columns_rejected() -> None:
    with pytest.raises(ValueError, match="unknown output column"):
        creatinine_stages_sql("creat", columns=("rid", "nope"))
    with pytest.raises(ValueError, match="unknown output column"):
        creatinine_stages_sql("creat", columns=())


def test_shared_windows_need_the_lower_bound_median() -> None:
    with pytest.raises(ValueError, match="leave nhs_rv2 and nhs_ratio out"):
        creatinine_stages_sql("creat", windows="win")
