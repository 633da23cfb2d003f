"""Shared fixtures: the real data beside the project, and a way to report measured figures."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (works from /work/main and from a fresh clone beside it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def report(request, capsys, record_property):
    """``report(name, value)``: print a measured figure in the test output (and the JUnit XML)."""

    def emit(name: str, value) -> None:
        record_property(name, value)
        with capsys.disabled():
            print(f"\n  [{request.node.name}] {name}: {value}")

    return emit
