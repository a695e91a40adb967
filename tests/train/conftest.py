"""Fixtures of the trainer tests: one small demo CubeStore per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train._helpers import make_demo_store


@pytest.fixture(scope="session")
def demo_cubes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 480 px demo scene tiled into 64 px cubes (train/val/test splits)."""
    return make_demo_store(tmp_path_factory.mktemp("train-store"))
