"""Fixtures of the pipeline tests: the tiny pipeline run once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipeline._pipeline_helpers import shared_tiny_run


@pytest.fixture(autouse=True, scope="session")
def _code_versions_of_the_session() -> Iterator[None]:
    """Each stage's code digest is computed once per test session. Tests copy the shared run and
    expect its steps to be up to date; in a working tree that other people edit while the tests
    run, a fresh digest would (rightly) rerun them. tests/pipeline/test_code_version.py tests the
    digests themselves."""
    import geoseg.pipeline.steps as steps

    real = steps.code_version
    cache: dict[tuple[str, ...], object] = {}

    def once(entries):
        key = tuple(entries)
        if key not in cache:
            cache[key] = real(key)
        return cache[key]

    steps.code_version = once
    yield
    steps.code_version = real


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run directory of the tiny pipeline (tile, train, evaluate, predict, export on a 324 px demo scene)."""
    return shared_tiny_run(tmp_path_factory)
