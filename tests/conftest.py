"""Shared test fixtures: where the open datasets live."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"
SEEDS = SHARED / "seeds"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The open datasets folder (../shared/data); tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def seeds_dir() -> Path:
    """The registry records of the four seed trials (../shared/seeds)."""
    if not SEEDS.is_dir():
        pytest.skip("../shared/seeds not present")
    return SEEDS
