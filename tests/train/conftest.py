"""Fixtures of the trainer tests: one small demo CubeStore per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.train._helpers import make_demo_store


@pytest.fixture(scope="session")
def demo_cubes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 336 px demo scene tiled into 64 px cubes (~17 train, ~4 val, ~4 test)."""
    return make_demo_store(tmp_path_factory.mktemp("train-store"))


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The 2 cores are shared with other test runs: one intra-op thread avoids OpenMP
    oversubscription, which slows convolutions down several times on a loaded machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
