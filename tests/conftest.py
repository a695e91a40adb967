"""Shared fixtures: the real Sentinel-2 samples in ../shared/data and small demo scenes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GEOSEG_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared(*parts: str) -> Path:
    """A path under ../shared/data; skips the test with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real Sentinel-2 samples not available: {path} is missing (place ../shared beside the repo)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated data (the catalog's demo scene) goes to a per-session cache, not ~/.cache."""
    os.environ.setdefault("GEOSEG_CACHE", str(tmp_path_factory.mktemp("geoseg-cache")))


@pytest.fixture(scope="session")
def demo_small(tmp_path_factory: pytest.TempPathFactory):
    """A 240 × 240 demo scene (per-band files at 10/20/60 m, SCL, labels)."""
    from geoseg.demo import generate_demo_scene

    return generate_demo_scene(tmp_path_factory.mktemp("demo") / "demo240", size=240, seed=3, progress=False)
