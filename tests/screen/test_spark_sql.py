"""The DuckDB -> Spark SQL transpilation's rewrites (``screen.backend.to_spark_sql``); the parity
tests (``test_spark_parity.py``) run the rewritten statements on Spark itself."""

from __future__ import annotations

from trialsieve.screen.backend import to_spark_sql
from trialsieve.screen.sql import iso_z


def test_a_row_number_without_order_becomes_a_unique_id() -> None:
    sql = to_spark_sql(
        "SELECT row_number() OVER () AS rid, row_number() OVER (ORDER BY x) AS r, "
        "row_number() OVER (PARTITION BY y ORDER BY x) AS q FROM t"
    )
    assert "MONOTONICALLY_INCREASING_ID() AS rid" in sql
    # an ordered row number stays one
    assert "ROW_NUMBER() OVER (ORDER BY x NULLS LAST) AS r" in sql
    assert "ROW_NUMBER() OVER (PARTITION BY y ORDER BY x NULLS LAST) AS q" in sql


def test_median_and_lists() -> None:
    sql = to_spark_sql("SELECT median(v) OVER (PARTITION BY p) AS m, list_slice(l, 2, 4) FROM t")
    assert "PERCENTILE(v, 0.5) OVER (PARTITION BY p)" in sql
    assert "SLICE(l, 2, 4 - 2 + 1)" in sql


def test_the_greatest_n_become_a_sorted_sliced_list() -> None:
    """DuckDB's ``max(x, n)`` (``sql.ev_list``) is a list of the n greatest, greatest first;
    Spark has no such aggregate: the sorted list of every value, sliced (a FILTER stays on the
    values collected). A plain ``max`` stays one."""
    sql = to_spark_sql(
        "SELECT max(s, 3) FILTER (WHERE ok) AS a, max(s, 10) AS b, max(v) AS c FROM t GROUP BY p"
    )
    assert "SLICE(SORT_ARRAY(COLLECT_LIST(s) FILTER(WHERE ok), FALSE), 1, 3) AS a" in sql
    assert "SLICE(SORT_ARRAY(COLLECT_LIST(s), FALSE), 1, 10) AS b" in sql
    assert "MAX(v) AS c" in sql


def test_iso_times_become_a_date_and_a_time_joined() -> None:
    """``sql.iso_z`` is one DuckDB ``strftime`` with the letters T and Z in its pattern; Spark's
    patterns reserve them, so it gets the date and the time formatted apart and joined."""
    sql = to_spark_sql(f"SELECT {iso_z('t')} AS a, strftime(t, '%Y-%m-%d') AS b FROM x")
    assert "CONCAT(DATE_FORMAT(t, 'yyyy-MM-dd'), 'T', DATE_FORMAT(t, 'HH:mm:ss'), 'Z') AS a" in sql
    assert "DATE_FORMAT(t, 'yyyy-MM-dd') AS b" in sql
