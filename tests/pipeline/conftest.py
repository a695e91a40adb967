"""Fixtures of the pipeline tests: the tiny pipeline run once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline._pipeline_helpers import shared_tiny_run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run directory of the tiny pipeline (tile, train, evaluate, predict, export on a 324 px demo scene)."""
    return shared_tiny_run(tmp_path_factory)
