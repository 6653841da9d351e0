"""Runs every scenario once per harness: each ``harness_<name>.py`` of this folder (see harness.py)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.harness import SinkHarness

#: Every sink with a harness here, by the name after ``harness_``.
HARNESSES = sorted(p.stem.removeprefix("harness_") for p in Path(__file__).parent.glob("harness_*.py"))


@pytest.fixture(params=HARNESSES)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SinkHarness]:
    """The sink under test and its server, ready for one test; the server available again after it."""
    module = importlib.import_module(f"tests.conformance.harness_{request.param}")
    yield from module.open_harness(request, tmp_path)
