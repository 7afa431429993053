"""Shared check of the AKI tests: the screening's reference samples equal the ARG_MIN columns."""

from __future__ import annotations

import duckdb

from trialsieve.kidney.aki import (
    BASELINES,
    W48H_S,
    baseline_sample_frame_sql,
    creatinine_stages_sql,
    window_sample_time_sql,
)


def assert_sample_times(con: duckdb.DuckDBPyConnection, *, bounds: bool = False) -> None:
    """``window_sample_time_sql`` over the staged rows gives the ``min48_time`` and
    ``baseline_time`` of the full query (its ARG_MIN windows), row for row; ``con`` holds the
    tables ``creat`` and ``pat`` (patients, for the back-calculated baseline)."""
    for baseline in BASELINES:
        full = creatinine_stages_sql("creat", patients="pat", baseline=baseline, bounds=bounds)
        con.execute(f"CREATE OR REPLACE TABLE stg AS {full}")
        for value, frame, col in (
            ("s.min48_umol_l", str(W48H_S), "min48_time"),
            ("s.baseline_umol_l", baseline_sample_frame_sql("s.baseline_source"), "baseline_time"),
        ):
            want = con.execute(f"SELECT rid, {col} FROM stg WHERE {col} IS NOT NULL").fetchall()
            got = con.execute(window_sample_time_sql("stg", "creat", value, frame, bounds=bounds))
            assert sorted(got.fetchall()) == sorted(want), (baseline, col)
            assert want, (baseline, col)  # the series have such samples
