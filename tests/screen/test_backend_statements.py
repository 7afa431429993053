"""DuckDBBackend runs independent ``create`` statements at once (``TRIALSIEVE_DUCKDB_STATEMENTS``):
a statement waits for the pending tables it reads, every read waits for all, a failure is raised
at the next read, and a screening gives the same records as one statement at a time."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from trialsieve.demo.cohort import DEMO_AS_OF, build_demo_store
from trialsieve.protocols.loader import load_bundled
from trialsieve.screen import backend as backend_mod
from trialsieve.screen.backend import DuckDBBackend
from trialsieve.screen.engine import screen_store

#: a statement that takes a while (so that one reading its table would overtake it)
SLOW = "SELECT sum(i * j) AS s FROM range(10000) a(i), range(10000) b(j)"


@pytest.fixture
def concurrent(monkeypatch: pytest.MonkeyPatch) -> DuckDBBackend:
    monkeypatch.setattr(backend_mod, "STATEMENTS", 3)
    return DuckDBBackend()


def test_a_statement_waits_for_the_tables_it_reads(concurrent: DuckDBBackend) -> None:
    b = concurrent
    b.create("t_slow", SLOW)
    b.create("t_next", "SELECT s + 1 AS s FROM t_slow")  # reads the slow one
    b.create("t_last", "SELECT s * 2 AS s FROM t_next")
    b.create("t_free", "SELECT 7 AS s")  # independent: may finish first
    want = sum(range(10000)) ** 2
    assert b.rows("SELECT s FROM t_last") == [((want + 1) * 2,)]
    assert b.rows("SELECT s FROM t_free") == [(7,)]
    assert {"t_slow", "t_next", "t_last", "t_free"} <= b.tables()


def test_the_same_table_made_twice_keeps_the_later(concurrent: DuckDBBackend) -> None:
    b = concurrent
    b.create("t", SLOW)
    b.create("t", "SELECT 1 AS s")  # must not be overwritten by the slow first version
    assert b.rows("SELECT s FROM t") == [(1,)]


def test_a_failure_is_raised_at_the_next_read_and_fails_what_reads_it(
    concurrent: DuckDBBackend,
) -> None:
    b = concurrent
    b.create("t_bad", "SELECT * FROM no_such_table")
    b.create("t_after", "SELECT * FROM t_bad")
    b.create("t_fine", "SELECT 1 AS s")
    with pytest.raises(duckdb.CatalogException, match="no_such_table"):
        b.rows("SELECT 1")
    # nothing is left pending: the backend goes on
    assert b.rows("SELECT s FROM t_fine") == [(1,)]
    assert "t_after" not in b.tables()


def test_screening_is_the_same_one_statement_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    build_demo_store(store, n_patients=120)
    protocols = load_bundled()
    runs = {}
    for k in (1, 3):
        monkeypatch.setattr(backend_mod, "STATEMENTS", k)
        run = screen_store(store, protocols, DEMO_AS_OF)
        runs[k] = (run.records, run.funnels)
    assert runs[1][0] and runs[3] == runs[1]
