"""KDIGO 2012 creatinine staging (issue 2 §3/§4): every edge, on hand-built series.

KDIGO Clinical Practice Guideline for AKI, Kidney Int Suppl 2012;2:1-138, Table 2: rise
>= 26.5 µmol/L (0.3 mg/dL) within 48 h; 1.5-1.9 / 2.0-2.9 / >= 3.0 times baseline within 7 days;
>= 353.6 µmol/L (4.0 mg/dL); initiation of renal replacement therapy. Baseline and windows as
issue 2 §3 specifies (min of the previous 7 d, else median of the 8-365 d before).
"""

from __future__ import annotations

import random
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trialsieve.kidney.aki import BASELINES, creatinine_stages_sql, stage_creatinine
from trialsieve.kidney.aki_inputs import connect, load_creatinine
from trialsieve.kidney.creatinine import UMOL_PER_MGDL

T0 = datetime(2024, 3, 1, 8, 0, 0)
H = timedelta(hours=1)
D = timedelta(days=1)

Row = tuple[str, timedelta, float]


def run(
    rows: list[Row],
    *,
    rrt: list[tuple[str, datetime, datetime | None]] | None = None,
    patients: list[tuple[str, str, str]] | None = None,
    baseline: str = "kdigo",
) -> list[dict[str, object]]:
    """Stage ``rows`` (patient, offset from T0, µmol/L); rid = position; result in rid order."""
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    tbl = pa.table(
        {
            "rid": pa.array(range(len(rows)), type=pa.int64()),
            "patient_id": [r[0] for r in rows],
            "t": pa.array([T0 + r[1] for r in rows], type=pa.timestamp("us")),
            "scr": pa.array([float(r[2]) for r in rows], type=pa.float64()),
        }
    )
    con.register("creat_in", tbl)
    con.execute("CREATE TABLE creat AS SELECT * FROM creat_in")
    rrt_name = pat_name = None
    if rrt is not None:
        con.execute('CREATE TABLE rrt (patient_id VARCHAR, start TIMESTAMP, "end" TIMESTAMP)')
        con.executemany("INSERT INTO rrt VALUES (?, ?, ?)", rrt)
        rrt_name = "rrt"
    if patients is not None:
        con.execute("CREATE TABLE pat (patient_id VARCHAR, birth_date DATE, sex VARCHAR)")
        con.executemany("INSERT INTO pat VALUES (?, CAST(? AS DATE), ?)", patients)
        pat_name = "pat"
    rel = stage_creatinine(con, "creat", patients=pat_name, rrt=rrt_name, baseline=baseline)
    cols = rel.columns
    return [dict(zip(cols, r, strict=True)) for r in rel.fetchall()]


def stages(rows: list[Row], **kw: object) -> list[int]:
    return [int(r["kdigo_stage"]) for r in run(rows, **kw)]  # type: ignore[call-overload]


# --- output shape -------------------------------------------------------------------------


def test_columns_and_one_row_per_input_in_rid_order() -> None:
    rows = [("b", 2 * H, 90.0), ("a", 0 * H, 80.0), ("a", 1 * H, 85.0)]
    out = run(rows)
    assert [r["rid"] for r in out] == [0, 1, 2]
    assert list(out[0]) == [
        "rid", "patient_id", "t", "scr", "min48_umol_l", "min48_time", "rise48_umol_l", "ratio48",
        "baseline_umol_l", "baseline_source", "baseline_time", "ratio", "kdigo_stage",
        "kdigo_reason", "kdigo_by", "rrt_start", "nhs_stage", "nhs_rv1", "nhs_rv2", "nhs_ratio",
    ]  # fmt: skip


def test_unknown_baseline_strategy_rejected() -> None:
    assert BASELINES == ("kdigo", "lowest-3m-1y-mdrd75")
    with pytest.raises(ValueError, match="unknown baseline"):
        creatinine_stages_sql("creat", baseline="first-value")


# --- absolute 48-h rule --------------------------------------------------------------------


def test_rise_exactly_26_5_is_stage_1_and_26_4_is_not() -> None:
    out = run([("a", 0 * H, 80.0), ("a", 24 * H, 106.5), ("b", 0 * H, 80.0), ("b", 24 * H, 106.4)])
    assert [r["kdigo_stage"] for r in out] == [0, 1, 0, 0]
    assert out[1]["rise48_umol_l"] == pytest.approx(26.5)
    assert out[1]["ratio48"] == pytest.approx(106.5 / 80.0)
    assert out[1]["min48_umol_l"] == 80.0
    assert out[1]["min48_time"] == T0
    assert out[1]["kdigo_reason"] == "rise 26.5 umol/L in 48 h (stage 1)"
    assert out[3]["kdigo_reason"] is None


def test_decimal_rise_that_is_26_5_on_paper_is_stage_1() -> None:
    # 76.6 - 50.1 == 26.499999999999993 in binary floating point; a clinician reads 26.5.
    assert 76.6 - 50.1 < 26.5
    assert stages([("a", 0 * H, 50.1), ("a", 10 * H, 76.6)]) == [0, 1]


def test_rise_exactly_48h_counts_and_49h_does_not() -> None:
    # baseline = the same 80 (min-7d) with ratio 1.33 -> only the absolute rule can fire
    assert stages([("a", 0 * H, 80.0), ("a", 48 * H, 106.5)]) == [0, 1]
    assert stages([("a", 0 * H, 80.0), ("a", 49 * H, 106.5)]) == [0, 0]
    one_second_late = 48 * H + timedelta(seconds=1)
    assert stages([("a", 0 * H, 80.0), ("a", one_second_late, 106.5)]) == [0, 0]


def test_min_over_48h_is_the_minimum_not_the_previous_value() -> None:
    out = run([("a", 0 * H, 90.0), ("a", 12 * H, 80.0), ("a", 24 * H, 100.0), ("a", 36 * H, 107.0)])
    assert out[3]["min48_umol_l"] == 80.0
    assert out[3]["kdigo_stage"] == 1


def test_two_results_in_one_hour_are_two_results() -> None:
    out = run([("a", 0 * H, 80.0), ("a", timedelta(minutes=30), 106.5)])
    assert [r["kdigo_stage"] for r in out] == [0, 1]


def test_results_in_the_same_second_are_not_earlier_than_each_other() -> None:
    out = run([("a", 0 * H, 80.0), ("a", 0 * H, 106.5)])
    assert [r["kdigo_stage"] for r in out] == [0, 0]
    assert out[1]["min48_umol_l"] is None


def test_other_patients_never_mix() -> None:
    assert stages([("a", 0 * H, 80.0), ("b", 1 * H, 200.0), ("a", 2 * H, 90.0)]) == [0, 0, 0]


# --- ratio to baseline ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "stage"),
    [(119.9, 0), (120.0, 1), (159.9, 1), (160.0, 2), (239.9, 2), (240.0, 3)],
)
def test_ratio_exactly_1_5_2_3_umol(value: float, stage: int) -> None:
    # baseline 80 three days earlier: inside 7 d, outside 48 h (absolute rule cannot fire)
    out = run([("a", 0 * H, 80.0), ("a", 3 * D, value)])
    assert out[1]["kdigo_stage"] == stage
    assert out[1]["baseline_umol_l"] == 80.0
    assert out[1]["baseline_source"] == "min-7d"
    assert out[1]["baseline_time"] == T0


@pytest.mark.parametrize(("mg", "stage"), [(1.49, 0), (1.5, 1), (2.0, 2), (3.0, 3)])
def test_ratio_exactly_1_5_2_3_from_mg_dl(mg: float, stage: int) -> None:
    # values converted from mg/dL (x 88.4) as the input layer does
    assert stages([("a", 0 * H, 1.0 * UMOL_PER_MGDL), ("a", 4 * D, mg * UMOL_PER_MGDL)]) == [
        0,
        stage,
    ]


def test_reason_names_ratio_baseline_and_source() -> None:
    out = run([("a", 0 * H, 80.0), ("a", 3 * D, 168.0)])
    assert out[1]["kdigo_reason"] == "ratio 2.10 to baseline 80.0 (min-7d) (stage 2)"
    assert out[1]["ratio"] == pytest.approx(2.1)


def test_baseline_is_the_7_day_minimum_not_the_first_value() -> None:
    rows = [("a", 0 * D, 150.0), ("a", 2 * D, 100.0), ("a", 6 * D, 150.0)]
    out = run(rows)
    assert out[2]["baseline_umol_l"] == 100.0
    assert out[2]["baseline_time"] == T0 + 2 * D
    assert out[2]["kdigo_stage"] == 1  # 150 / 100 = 1.5 (a first-value baseline would say 1.0)


def test_sample_exactly_7_days_earlier_is_in_the_7_day_window() -> None:
    out = run([("a", 0 * D, 80.0), ("a", 7 * D, 120.0)])
    assert out[1]["baseline_source"] == "min-7d"
    assert out[1]["kdigo_stage"] == 1
    out = run([("a", 0 * D, 80.0), ("a", 7 * D + timedelta(seconds=1), 120.0)])
    assert out[1]["baseline_source"] == "median-8-365d"
    assert out[1]["baseline_time"] is None
    assert out[1]["kdigo_stage"] == 1


def test_median_of_8_to_365_days_when_nothing_in_7_days() -> None:
    rows = [
        ("a", -300 * D, 60.0),
        ("a", -200 * D, 80.0),
        ("a", -100 * D, 100.0),
        ("a", -30 * D, 200.0),
        ("a", 0 * D, 180.0),
    ]
    out = run(rows)
    assert out[4]["baseline_source"] == "median-8-365d"
    assert out[4]["baseline_umol_l"] == 90.0  # median(60, 80, 100, 200) = (80 + 100) / 2
    assert out[4]["kdigo_stage"] == 2  # 180 / 90 = 2.0


def test_the_7_day_minimum_takes_precedence_over_the_median() -> None:
    rows = [("a", -100 * D, 60.0), ("a", -3 * D, 150.0), ("a", 0 * D, 180.0)]
    out = run(rows)
    assert out[2]["baseline_source"] == "min-7d"
    assert out[2]["baseline_umol_l"] == 150.0
    assert out[2]["kdigo_stage"] == 0


def test_history_only_older_than_365_days_gives_no_baseline() -> None:
    out = run([("a", -366 * D, 60.0), ("a", 0 * D, 200.0)])
    assert out[1]["baseline_umol_l"] is None
    assert out[1]["baseline_source"] is None
    assert out[1]["kdigo_stage"] == 0
    out = run([("a", -365 * D, 60.0), ("a", 0 * D, 200.0)])  # far edge included
    assert out[1]["baseline_source"] == "median-8-365d"
    assert out[1]["kdigo_stage"] == 3


# --- >= 353.6 µmol/L -------------------------------------------------------------------------


def test_353_6_with_acute_rise_is_stage_3() -> None:
    out = run([("a", 0 * H, 300.0), ("a", 24 * H, 353.6)])
    assert out[1]["kdigo_stage"] == 3
    assert "353.6" in str(out[1]["kdigo_reason"])


def test_353_6_from_4_mg_dl_with_acute_rise_is_stage_3() -> None:
    out = run([("a", 0 * H, 3.6 * UMOL_PER_MGDL), ("a", 24 * H, 4.0 * UMOL_PER_MGDL)])
    assert out[1]["kdigo_stage"] == 3


def test_high_creatinine_without_acute_rise_is_not_stage_3() -> None:
    out = run([("a", 0 * H, 340.0), ("a", 24 * H, 360.0)])  # rise 20, ratio 1.06
    assert out[1]["kdigo_stage"] == 0
    out = run([("a", 0 * H, 400.0)])  # a single high value: no comparison at all
    assert out[0]["kdigo_stage"] == 0


def test_353_5_with_acute_rise_is_only_stage_1() -> None:
    out = run([("a", 0 * H, 300.0), ("a", 24 * H, 353.5)])
    assert out[1]["kdigo_stage"] == 1


def test_high_creatinine_with_ratio_1_5_is_stage_3() -> None:
    out = run([("a", 0 * D, 240.0), ("a", 4 * D, 360.0)])  # ratio 1.5, no 48-h rise
    assert out[1]["kdigo_stage"] == 3


# --- falling creatinine, RRT ---------------------------------------------------------------


def test_falling_creatinine_is_never_aki() -> None:
    rows = [("a", i * 12 * H, v) for i, v in enumerate([300.0, 250.0, 180.0, 120.0, 90.0])]
    out = run(rows)
    assert [r["kdigo_stage"] for r in out] == [0, 0, 0, 0, 0]
    assert all(r["rise48_umol_l"] is None or r["rise48_umol_l"] < 0 for r in out)


def test_rrt_gives_stage_3_from_start_while_ongoing_then_creatinine_again() -> None:
    rows = [
        ("a", 0 * H, 300.0),
        ("a", 11 * H, 310.0),
        ("a", 12 * H, 250.0),  # exactly at RRT start
        ("a", 36 * H, 200.0),
        ("a", 96 * H, 150.0),  # after the RRT end
    ]
    out = run(rows, rrt=[("a", T0 + 12 * H, T0 + 72 * H)])
    assert [r["kdigo_stage"] for r in out] == [0, 0, 3, 3, 0]
    assert out[2]["kdigo_by"] == "rrt"
    assert out[2]["kdigo_reason"] == "RRT started 2024-03-01 20:00:00 (stage 3)"
    assert out[2]["rrt_start"] == T0 + 12 * H


def test_ongoing_rrt_without_end() -> None:
    out = run([("a", 0 * H, 300.0), ("a", 400 * D, 200.0), ("b", 1 * D, 90.0)],
              rrt=[("a", T0 + 1 * H, None)])  # fmt: skip
    assert [r["kdigo_stage"] for r in out] == [0, 3, 0]


def test_kdigo_by_is_creatinine_when_creatinine_itself_is_stage_3() -> None:
    out = run([("a", 0 * D, 80.0), ("a", 3 * D, 400.0)], rrt=[("a", T0 + 3 * D, None)])
    assert out[1]["kdigo_stage"] == 3
    assert out[1]["kdigo_by"] == "creatinine"


# --- properties ----------------------------------------------------------------------------

_series = st.lists(
    st.tuples(
        st.sampled_from(["p1", "p2", "p3"]),
        st.integers(min_value=0, max_value=30 * 24 * 4),  # quarter hours over 30 days
        st.integers(min_value=40, max_value=1200),  # tenths of mg/dL (0.4 - 12.0 mg/dL)
    ),
    min_size=1,
    max_size=40,
)


def _key(r: dict[str, object]) -> tuple[object, ...]:
    return (r["patient_id"], r["t"], r["scr"])


@settings(max_examples=40, deadline=None)
@given(_series, st.randoms(use_true_random=False))
def test_stages_do_not_depend_on_row_order(
    series: list[tuple[str, int, int]], rnd: random.Random
) -> None:
    rows = [(p, timedelta(minutes=15 * q), v / 10 * UMOL_PER_MGDL) for p, q, v in series]
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    a = sorted((_key(r), r["kdigo_stage"], r["nhs_stage"], r["baseline_umol_l"]) for r in run(rows))
    b = sorted(
        (_key(r), r["kdigo_stage"], r["nhs_stage"], r["baseline_umol_l"]) for r in run(shuffled)
    )
    assert a == b


@settings(max_examples=30, deadline=None)
@given(_series)
def test_stages_do_not_depend_on_the_input_unit(series: list[tuple[str, int, int]]) -> None:
    """Values given in mg/dL (converted x 88.4 in SQL by the input layer) or already in µmol/L."""

    def via_csv(unit: str) -> list[tuple[object, ...]]:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "c.csv"
            lines = ["patient_id,time,value,unit"]
            for p, q, v in series:
                t = (T0 + timedelta(minutes=15 * q)).isoformat()
                value = repr(v / 10) if unit == "mg/dL" else repr(v / 10 * UMOL_PER_MGDL)
                lines.append(f"{p},{t},{value},{unit}")
            path.write_text("\n".join(lines) + "\n")
            con = connect()
            load_creatinine(con, path)
            rel = stage_creatinine(con, "creat")
            return [(r[0], r[1]) for r in rel.select("kdigo_stage, nhs_stage").fetchall()]

    assert via_csv("mg/dL") == via_csv("umol/L")
