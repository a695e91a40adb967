"""Fixtures of the tiler tests: a small demo scene + catalog, a shared Dask cluster, one store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiling._tiling_helpers import DEMO_PARAMS, write_catalog


@pytest.fixture(scope="session")
def demo480(tmp_path_factory: pytest.TempPathFactory):
    """A 480 × 480 demo scene (per-band files at 10/20/60 m, SCL with clouds, labels 1..6)."""
    from geoseg.demo import generate_demo_scene

    return generate_demo_scene(tmp_path_factory.mktemp("demo") / "demo480", size=480, seed=1, progress=False)


@pytest.fixture(scope="session")
def demo_catalog(demo480, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Catalog with dataset ``demo480``: the demo scene and its label raster, no ignore codes."""
    path = tmp_path_factory.mktemp("catalog") / "catalog.yaml"
    return write_catalog(path, demo480.scene, {"raster": str(demo480.labels)})


@pytest.fixture(scope="session")
def client():
    """A LocalCluster of two worker processes shared by the tests (start-up paid once)."""
    from geoseg.tiling.tiler import local_cluster

    with local_cluster(2) as c:
        yield c


@pytest.fixture(scope="session")
def demo_store(demo_catalog, client, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo scene tiled once with DEMO_PARAMS."""
    from geoseg.tiling import tile_dataset

    out = tmp_path_factory.mktemp("stores") / "demo_store"
    tile_dataset(demo_catalog, "demo480", out, client=client, progress=False, **DEMO_PARAMS)
    return out
