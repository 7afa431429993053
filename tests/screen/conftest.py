"""Fixtures for engine tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from storekit import build_store

_n = itertools.count()


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[[list[dict], list[dict]], Path]:
    """Factory: (patients, events) -> a store directory."""

    def build(patients: list[dict], events: list[dict]) -> Path:
        return build_store(tmp_path / f"store{next(_n)}", patients, events)

    return build
