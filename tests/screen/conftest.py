"""Fixtures for engine tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from statements import Created
from storekit import build_store

from trialsieve.demo.cohort import build_demo_store
from trialsieve.screen.backend import ALL_PATIENTS, DuckDBBackend

_n = itertools.count()


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[[list[dict], list[dict]], Path]:
    """Factory: (patients, events) -> a store directory."""

    def build(patients: list[dict], events: list[dict]) -> Path:
        return build_store(tmp_path / f"store{next(_n)}", patients, events)

    return build


@pytest.fixture
def demo_backend(tmp_path: Path) -> DuckDBBackend:
    """A DuckDB backend over a 300-patient demo store: events loaded, ``pop`` every patient."""
    build_demo_store(tmp_path / "demo", n_patients=300)
    backend = DuckDBBackend()
    backend.open_store(tmp_path / "demo")
    backend.load_events(ALL_PATIENTS)
    backend.create("pop", "SELECT patient_id, birth_date, sex, source FROM patients")
    return backend


@pytest.fixture
def created(monkeypatch: pytest.MonkeyPatch) -> Created:
    """Logs the tables ``DuckDBBackend.create`` makes (clear it before the run to count)."""
    statements = Created()
    create = DuckDBBackend.create

    def logged(self: DuckDBBackend, name: str, select_sql: str) -> None:
        statements.append(select_sql)
        create(self, name, select_sql)

    monkeypatch.setattr(DuckDBBackend, "create", logged)
    return statements
