"""NHS England AKI algorithm (Patient Safety Alert NHS/PSA/D/2014/010), as issue 2 §3 states it.

At each result C1: no result in the previous 365 d -> 0. RV1 = min of [t-7 d, t); RV2 = median of
[t-365 d, t-7 d); ratio = larger of C1/RV1, C1/RV2 that exist. Ratio >= 1.5: 3 if ratio >= 3 or
C1 > 354, 2 if ratio >= 2, else 1. Otherwise C1 - min([t-48 h, t)) > 26 -> 1, else 0.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pyarrow as pa
import pytest

from trialsieve.kidney.aki import stage_creatinine

T0 = datetime(2024, 5, 1, 9, 0, 0)
H = timedelta(hours=1)
D = timedelta(days=1)


def nhs(
    rows: list[tuple[timedelta, float]], baseline: str = "kdigo", with_patients: bool = False
) -> list[dict[str, object]]:
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.register(
        "c_in",
        pa.table(
            {
                "rid": pa.array(range(len(rows)), type=pa.int64()),
                "patient_id": ["x"] * len(rows),
                "t": pa.array([T0 + r[0] for r in rows], type=pa.timestamp("us")),
                "scr": pa.array([r[1] for r in rows], type=pa.float64()),
            }
        ),
    )
    con.execute("CREATE TABLE creat AS SELECT * FROM c_in")
    con.execute("CREATE TABLE pat AS SELECT 'x' AS patient_id, DATE '1950-01-01' AS birth_date, "
                "'female' AS sex")  # fmt: skip
    rel = stage_creatinine(
        con, "creat", baseline=baseline, patients="pat" if with_patients else None
    )
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def last_stage(rows: list[tuple[timedelta, float]]) -> int:
    return int(nhs(rows)[-1]["nhs_stage"])  # type: ignore[call-overload]


def test_no_result_in_previous_365_days_is_no_stage() -> None:
    assert last_stage([(0 * D, 400.0)]) == 0
    assert last_stage([(-366 * D, 60.0), (0 * D, 400.0)]) == 0
    assert last_stage([(-365 * D, 60.0), (0 * D, 400.0)]) == 3  # far edge included


@pytest.mark.parametrize(
    ("value", "stage"),
    [(119.9, 0), (120.0, 1), (159.9, 1), (160.0, 2), (239.9, 2), (240.0, 3)],
)
def test_rv1_ratio_thresholds(value: float, stage: int) -> None:
    out = nhs([(0 * D, 80.0), (3 * D, value)])
    assert out[1]["nhs_stage"] == stage
    assert out[1]["nhs_rv1"] == 80.0
    assert out[1]["nhs_rv2"] is None


def test_rv2_is_the_median_of_8_to_365_days() -> None:
    out = nhs([(-200 * D, 60.0), (-100 * D, 80.0), (-50 * D, 100.0), (0 * D, 160.0)])
    assert out[3]["nhs_rv1"] is None
    assert out[3]["nhs_rv2"] == 80.0
    assert out[3]["nhs_stage"] == 2
    assert out[3]["nhs_ratio"] == pytest.approx(2.0)


def test_ratio_is_the_larger_of_rv1_and_rv2() -> None:
    # RV1 = 160 (2 days ago) gives 1.03; RV2 = 75 gives 2.2 -> stage 2 (KDIGO uses only min-7d)
    out = nhs([(-100 * D, 70.0), (-50 * D, 80.0), (-2 * D, 160.0), (0 * D, 165.0)])
    assert out[3]["nhs_rv1"] == 160.0
    assert out[3]["nhs_rv2"] == 75.0
    assert out[3]["nhs_ratio"] == pytest.approx(2.2)
    assert out[3]["nhs_stage"] == 2
    assert out[3]["kdigo_stage"] == 0


def test_c1_over_354_with_ratio_1_5_is_stage_3_and_exactly_354_is_not() -> None:
    assert last_stage([(0 * D, 236.1), (3 * D, 354.2)]) == 3  # ratio 1.50, C1 > 354
    assert last_stage([(0 * D, 236.0), (3 * D, 354.0)]) == 1  # ratio 1.5, C1 not > 354


def test_high_c1_without_ratio_1_5_is_not_stage_3() -> None:
    assert last_stage([(0 * D, 300.0), (3 * D, 400.0)]) == 0  # ratio 1.33, no 48 h window


def test_48h_difference_must_exceed_26() -> None:
    assert last_stage([(0 * H, 80.0), (24 * H, 106.0)]) == 0  # exactly 26: not > 26
    assert last_stage([(0 * H, 80.0), (24 * H, 106.1)]) == 1
    assert last_stage([(0 * H, 80.0), (48 * H, 106.1)]) == 1  # exactly 48 h counts
    assert last_stage([(0 * H, 80.0), (49 * H, 106.1)]) == 0


def test_falling_creatinine_is_no_stage() -> None:
    out = nhs([(0 * H, 300.0), (24 * H, 200.0), (48 * H, 120.0)])
    assert [r["nhs_stage"] for r in out] == [0, 0, 0]


def test_nhs_stage_never_depends_on_the_baseline_strategy() -> None:
    rows = [(-200 * D, 60.0), (-2 * D, 90.0), (-1 * D, 100.0), (0 * D, 150.0), (1 * D, 170.0)]
    a = [r["nhs_stage"] for r in nhs(rows)]
    b = [r["nhs_stage"] for r in nhs(rows, baseline="lowest-3m-1y-mdrd75", with_patients=True)]
    assert a == b
    assert a == [0, 1, 1, 2, 2]
