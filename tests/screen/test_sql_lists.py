"""Evidence lists and per-group aggregates of ``screen.sql``: the top-n form gives the first n
items of what ``list(... ORDER BY ...)`` gives, and groups of one row what grouping gives.
Spark gives the same lists (``test_spark_parity.py``)."""

from __future__ import annotations

import duckdb
import pytest

from trialsieve.screen.sql import (
    MAX_EVIDENCE,
    count_agg,
    ev_list,
    evidence_agg,
    group_rows,
    latest_text_agg,
    tie_order,
)

#: rows (g, t, ev, what): groups of one row (the first 60) and of many, instants shared within a
#: group, every evidence field NULL in some rows, '' beside NULL, equal items
ROWS = """
    SELECT CASE WHEN i < 60 THEN 1000 + i ELSE i % 97 END AS g, i % 3 = 0 AS pass,
      CASE WHEN i % 41 = 0 THEN NULL
           ELSE TIMESTAMP '2026-01-01 00:00:00' + INTERVAL (i % 4) DAY END AS t,
      {'source': CASE WHEN i % 3 = 0 THEN NULL ELSE 'S' || CAST(i % 2 AS VARCHAR) END,
       'code': CASE WHEN i % 5 = 0 THEN NULL ELSE 'c|' || CAST(i % 2 AS VARCHAR) END,
       'value': CASE WHEN i % 7 = 0 THEN NULL ELSE (i % 3) * 1.5 END,
       'unit': CASE WHEN i % 11 = 0 THEN NULL WHEN i % 2 = 0 THEN '' ELSE 'mg' END,
       'time': 'x',
       'note': CASE WHEN i % 2 = 0 THEN NULL ELSE 'n' || CAST(i % 3 AS VARCHAR) END} AS ev,
      'what ' || CAST(i % 5 AS VARCHAR) AS what
    FROM range(3000) r(i)
"""


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.execute(f"CREATE TABLE r AS {ROWS}")
    return c


def _by_group(con: duckdb.DuckDBPyConnection, sql: str) -> dict[int, object]:
    return {g: x for g, x in con.execute(sql).fetchall()}


@pytest.mark.parametrize("where", [None, "pass", "NOT pass"])
@pytest.mark.parametrize("limit", [MAX_EVIDENCE, 1000])
def test_ev_list_is_the_list_ordered_by_time_then_its_fields_nulls_last(
    con: duckdb.DuckDBPyConnection, where: str | None, limit: int
) -> None:
    filt = f" FILTER (WHERE {where})" if where else ""
    ordered = f"list(ev ORDER BY t DESC NULLS LAST, {tie_order('ev')}){filt}"
    want = _by_group(con, f"SELECT g, list_slice({ordered}, 1, {limit}) FROM r GROUP BY g")
    got = _by_group(con, f"SELECT g, {ev_list('ev', 't', where, limit)} FROM r GROUP BY g")
    assert got == want
    # groups longer than the limit are cut to it
    longest = max(len(x) for x in want.values() if x is not None)
    assert longest == limit if limit == MAX_EVIDENCE else longest > MAX_EVIDENCE
    # the data has what the order must get right: NULL and non-NULL fields at one instant
    assert any(x is None for x in want.values()) == (where is not None)
    some = [x for x in want.values() if x is not None and len(x) > 5]
    assert some and any(e["note"] is None for e in some[0]) and any(e["note"] for e in some[0])


def test_groups_of_one_row_get_what_grouping_gives(con: duckdb.DuckDBPyConnection) -> None:
    aggs = (
        count_agg("n"),
        evidence_agg("evs", "ev", "t"),
        latest_text_agg("last", "t", "what"),
    )
    grouped = ", ".join(f"{a.many} AS {a.name}" for a in aggs)
    want = con.execute(f"SELECT g, {grouped} FROM r GROUP BY g ORDER BY g").fetchall()
    got = con.execute(f"SELECT * FROM ({group_rows('SELECT * FROM r', ['g'], aggs)}) ORDER BY g")
    assert got.fetchall() == want
    sizes = dict(con.execute("SELECT g, count(*) FROM r GROUP BY g").fetchall())
    assert min(sizes.values()) == 1 and max(sizes.values()) > 1
