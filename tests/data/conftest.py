"""Fixtures of the data tests: a small demo CubeStore (built with the real tiler)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.train._helpers import make_demo_store


@pytest.fixture(scope="session")
def data_cubes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 240 px demo scene tiled into 48 px cubes."""
    return make_demo_store(tmp_path_factory.mktemp("data-store"), size=240, seed=2, cube_size=48, split_block=1,
                           min_valid=0.1)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The 2 cores are shared with other test runs: one intra-op thread avoids OpenMP
    oversubscription, which slows convolutions down several times on a loaded machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
