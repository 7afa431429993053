"""Baseline strategy ``lowest-3m-1y-mdrd75`` (NCT06954740 inclusion criterion 1).

"The lowest creatinine value obtained ... within 3 months, and the longest time limit is the
creatinine value within 1 year. If there is no such value, the serum creatinine can be estimated
using the MDRD equation under the assumption that the baseline eGFR is 75 ml/min/1.73m²."
Three months = 91.3125 days (3 mean Gregorian months), documented in trialsieve.kidney.aki.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest

from trialsieve.kidney.aki import W3M_S, stage_creatinine
from trialsieve.kidney.baseline import backcalc_creatinine_umol_l

T0 = datetime(2024, 6, 15, 12, 0, 0)
D = timedelta(days=1)
H = timedelta(hours=1)
STRATEGY = "lowest-3m-1y-mdrd75"


def run(
    rows: list[tuple[str, timedelta, float]],
    patients: list[tuple[str, date | None, str | None]] | None = None,
    baseline: str = STRATEGY,
) -> list[dict[str, object]]:
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.register(
        "c_in",
        pa.table(
            {
                "rid": pa.array(range(len(rows)), type=pa.int64()),
                "patient_id": [r[0] for r in rows],
                "t": pa.array([T0 + r[1] for r in rows], type=pa.timestamp("us")),
                "scr": pa.array([r[2] for r in rows], type=pa.float64()),
            }
        ),
    )
    con.execute("CREATE TABLE creat AS SELECT * FROM c_in")
    pat = None
    if patients is not None:
        con.execute("CREATE TABLE pat (patient_id VARCHAR, birth_date DATE, sex VARCHAR)")
        con.executemany("INSERT INTO pat VALUES (?, ?, ?)", patients)
        pat = "pat"
    rel = stage_creatinine(con, "creat", patients=pat, baseline=baseline)
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def test_three_months_is_91_3125_days() -> None:
    assert W3M_S == 91 * 86400 + 27000  # 91 d 7 h 30 min


def test_lowest_in_3_months_even_if_older_values_are_lower() -> None:
    out = run(
        [("a", -200 * D, 50.0), ("a", -80 * D, 90.0), ("a", -10 * D, 70.0), ("a", 0 * D, 150.0)]
    )
    assert out[3]["baseline_source"] == "lowest-3m"
    assert out[3]["baseline_umol_l"] == 70.0
    assert out[3]["baseline_time"] == T0 - 10 * D
    assert out[3]["kdigo_stage"] == 2  # 150 / 70 = 2.14


def test_lowest_in_3_months_includes_the_last_week() -> None:
    # unlike the KDIGO default, there is no 7-day split: the lowest of 3 months wins
    out = run([("a", -60 * D, 60.0), ("a", -2 * D, 100.0), ("a", 0 * D, 125.0)])
    assert out[2]["baseline_umol_l"] == 60.0
    assert out[2]["kdigo_stage"] == 2
    kd = run([("a", -60 * D, 60.0), ("a", -2 * D, 100.0), ("a", 0 * D, 125.0)], baseline="kdigo")
    assert kd[2]["baseline_umol_l"] == 100.0
    assert kd[2]["kdigo_stage"] == 0


def test_3_month_edge() -> None:
    edge = timedelta(seconds=W3M_S)
    out = run([("a", -edge, 60.0), ("a", 0 * D, 100.0)])
    assert out[1]["baseline_source"] == "lowest-3m"
    out = run([("a", -edge - timedelta(seconds=1), 60.0), ("a", 0 * D, 100.0)])
    assert out[1]["baseline_source"] == "lowest-1y"
    assert out[1]["baseline_umol_l"] == 60.0


def test_lowest_in_the_year_when_nothing_in_3_months() -> None:
    out = run(
        [("a", -300 * D, 80.0), ("a", -200 * D, 70.0), ("a", -100 * D, 90.0), ("a", 0 * D, 140.0)]
    )
    assert out[3]["baseline_source"] == "lowest-1y"
    assert out[3]["baseline_umol_l"] == 70.0
    assert out[3]["baseline_time"] == T0 - 200 * D
    assert out[3]["kdigo_stage"] == 2


def test_year_edge_and_mdrd_fallback() -> None:
    born = date(1950, 6, 15)
    out = run([("a", -365 * D, 70.0), ("a", 0 * D, 140.0)], [("a", born, "male")])
    assert out[1]["baseline_source"] == "lowest-1y"
    out = run([("a", -366 * D, 70.0), ("a", 0 * D, 140.0)], [("a", born, "male")])
    assert out[1]["baseline_source"] == "mdrd75-backcalc"
    assert out[1]["baseline_time"] is None


@pytest.mark.parametrize("sex", ["male", "female"])
def test_mdrd75_backcalculation_uses_age_at_the_result_and_sex(sex: str) -> None:
    born = date(1955, 3, 1)
    out = run([("a", 0 * D, 130.0), ("a", 400 * D, 130.0)], [("a", born, sex)])
    for r in out:
        t = r["t"]
        assert isinstance(t, datetime)
        age = (t - datetime(1955, 3, 1)).total_seconds() / (365.25 * 86400)
        expected = float(backcalc_creatinine_umol_l(age, sex == "female"))
        assert r["baseline_source"] == "mdrd75-backcalc"
        assert r["baseline_umol_l"] == pytest.approx(expected, rel=1e-12)
    # woman aged 69.3: 175 x 69.3^-0.203 x 0.742 = 54.9; (75 / 54.9)^(-1/1.154) = 0.763 mg/dL
    # = 67.5 µmol/L (by hand); 130 / 67.5 = 1.93 -> stage 1
    if sex == "female":
        assert out[0]["baseline_umol_l"] == pytest.approx(67.5, abs=0.05)
        assert out[0]["kdigo_stage"] == 1
        assert "mdrd75-backcalc" in str(out[0]["kdigo_reason"])


def test_no_patients_or_unknown_sex_gives_no_baseline() -> None:
    out = run([("a", 0 * D, 200.0)])
    assert out[0]["baseline_umol_l"] is None
    assert out[0]["baseline_source"] is None
    assert out[0]["kdigo_stage"] == 0
    out = run([("a", 0 * D, 200.0), ("b", 0 * D, 200.0)],
              [("a", date(1950, 1, 1), None), ("b", None, "male")])  # fmt: skip
    assert [r["baseline_source"] for r in out] == [None, None]


def test_absolute_48h_rule_is_unchanged_by_the_strategy() -> None:
    rows = [("a", -20 * D, 60.0), ("a", 0 * H, 80.0), ("a", 47 * H, 106.5)]
    out = run(rows)
    assert out[2]["baseline_umol_l"] == 60.0
    assert out[2]["kdigo_stage"] == 1  # 106.5 / 60 = 1.775 -> 1 either way; and rise 26.5
    assert "rise 26.5 umol/L in 48 h" in str(out[2]["kdigo_reason"])
    out = run([("a", 0 * H, 200.0), ("a", 47 * H, 226.5)], [("a", date(1950, 1, 1), "male")])
    assert out[1]["baseline_umol_l"] == 200.0
    assert out[1]["kdigo_stage"] == 1
