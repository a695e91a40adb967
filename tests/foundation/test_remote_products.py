"""Remote Sentinel-2 products (issue 14): a ``.SAFE.zip`` and a ``.SAFE`` folder on a web server.

The real L2A product of ../shared/data is zipped by the test and served, with the product
folder itself, by local servers (127.0.0.1, HTTP Range requests) running in child processes:
GDAL's listing of a remote folder or zip goes through pyogrio, which holds the GIL while GDAL
waits, so a server thread of the test process would never answer.

* ``https://…/X.SAFE.zip``, ``/vsizip//vsicurl/…/X.SAFE.zip/X.SAFE`` and GDAL's single-slash
  ``/vsizip/vsicurl/…`` read the product in place, as the unpacked folder reads: same bands,
  grid, offset, facts; the same sampled ``inspect`` and a bit-identical feature stack;
* a remote ``.SAFE`` folder is read where the server lists folders (an Apache-style index),
  and refused in one line naming it as written, with what to give instead, where it does not;
* a missing archive, or a raster without a CRS, is one line naming the URL as written; no GDAL
  warning is printed.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geoseg.errors import MissingFileError
from geoseg.features import read_features
from geoseg.io import open_scene
from geoseg.io.offsets import offset_from_safe_xml
from geoseg.io.products import find_product
from tests.conftest import shared
from tests.foundation._http_server import ProcessServer, serve_folder_process, url
from tests.foundation.test_inputs_zip import _recipe_60m, _zip
from tests.reliability.conftest import assert_refused, run_cli, run_inproc

SAFE = ("s2_l2a_T29UNU_scl", "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE")
NAME = SAFE[1]
FAST_FAIL = {"GDAL_HTTP_TIMEOUT": "5", "GDAL_HTTP_MAX_RETRY": "0"}


@pytest.fixture(scope="module")
def zipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProcessServer, Path]]:
    """(a server of ``X.SAFE.zip``, the unpacked product folder)."""
    folder = shared(*SAFE)
    root = tmp_path_factory.mktemp("safe-zip-http")
    _zip(folder, root / f"{NAME}.zip", zipfile.ZIP_STORED)
    with rasterio.open(root / "plain.tif", "w", driver="GTiff", width=64, height=64, count=1, dtype="uint16") as dst:
        dst.write(np.full((1, 64, 64), 1200, dtype="uint16"))  # no CRS, no transform
    with serve_folder_process(root) as server:
        yield server, folder


@pytest.fixture(scope="module")
def listed() -> Iterator[ProcessServer]:
    """A server of the product's parent folder with Apache-style folder indexes (GDAL can list it)."""
    with serve_folder_process(shared(*SAFE).parent, listing=True) as server:
        yield server


@pytest.fixture(autouse=True)
def _quick_http(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST_FAIL.items():
        monkeypatch.setenv(name, value)


def _same_scene(remote, local) -> None:
    assert (remote.layout, remote.level, remote.scene_id, remote.datetime) == \
        (local.layout, local.level, local.scene_id, local.datetime) == ("safe", "L2A", NAME.split(".")[0],
                                                                       local.datetime)
    assert list(remote.bands) == list(local.bands) and remote.grid == local.grid
    assert remote.offset == local.offset and remote.offset.source == "metadata" and remote.facts == local.facts
    assert remote.scl is not None and local.scl is not None and remote.scl.grid == local.scl.grid


def test_every_form_of_a_remote_zip_finds_the_product(zipped) -> None:
    server, folder = zipped
    archive = url(server, f"{NAME}.zip")
    inside = f"/vsizip//vsicurl/{archive}/{NAME}"
    members = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    expected = offset_from_safe_xml(folder / "MTD_MSIL2A.xml")
    for given in (archive, inside, f"/vsizip/vsicurl/{archive}", f"/vsicurl/{archive}/"):
        product = find_product(given)
        assert product is not None and product.root == inside, given
        assert product.layout == "safe" and product.xml_name == "MTD_MSIL2A.xml"
        assert [f.removeprefix(f"{inside}/") for f in product.files] == members
        assert product.xml is not None and offset_from_safe_xml(Path(product.xml_name), product.xml) == expected


@pytest.mark.slow  # its forms are found by the test above in the default tier; this reads one end to end
def test_remote_zip_reads_like_the_folder(zipped) -> None:
    server, folder = zipped
    given = url(server, f"{NAME}.zip")
    local, remote = open_scene(folder, resolution=60), open_scene(given, resolution=60)
    assert remote.path == given  # named as written in outputs and errors
    _same_scene(remote, local)
    assert all(b.path.startswith("/vsizip//vsicurl/http://127.0.0.1") for b in remote.bands.values())
    window = Window(900, 500, 300, 200)  # 60 m grid: valid land, cloud and the no-data edge
    recipe = _recipe_60m()
    expected, expected_valid = read_features(local, window, recipe)
    got, valid = read_features(remote, window, recipe)
    assert expected_valid.any() and not expected_valid.all()
    np.testing.assert_array_equal(valid, expected_valid)
    assert got.tobytes() == expected.tobytes()  # bit for bit


def test_remote_safe_folder_is_read_where_the_server_lists_it(listed, zipped) -> None:
    _, folder = zipped
    given = url(listed, NAME)
    remote = open_scene(given, resolution=60)
    assert remote.path == given
    _same_scene(remote, open_scene(folder, resolution=60))
    assert all(b.path.startswith("/vsicurl/http://127.0.0.1") for b in remote.bands.values())


def test_remote_safe_folder_without_listing_is_refused_in_one_line(zipped) -> None:
    server, _ = zipped  # serves the zip only: the folder is not there, and the server lists nothing
    for given in (url(server, NAME), f"/vsicurl/{url(server, NAME)}/"):
        result = run_cli("inspect", given, env=FAST_FAIL, timeout=60)
        line = assert_refused(result, given)
        assert "cannot list the .SAFE folder" in line and "give the product as a .SAFE.zip" in line
        assert "Warning" not in result.stderr and "/vsicurl/http" not in line.replace(given, "")


def test_missing_remote_zip_is_one_line_naming_the_url(zipped) -> None:
    server, _ = zipped
    for given in (url(server, "gone.SAFE.zip"), f"/vsizip//vsicurl/{url(server, 'gone.SAFE.zip')}/gone.SAFE"):
        with pytest.raises(MissingFileError) as err:
            open_scene(given)
        assert str(err.value).startswith(f"{given}: cannot open the zip archive") and "\n" not in str(err.value)
    result = run_cli("inspect", url(server, "gone.SAFE.zip"), env=FAST_FAIL, timeout=60)
    assert_refused(result, url(server, "gone.SAFE.zip"))
    assert "Warning" not in result.stderr


def test_remote_raster_without_crs_is_named_as_written(zipped) -> None:
    server, _ = zipped
    given = url(server, "plain.tif")
    result = run_cli("inspect", given, env=FAST_FAIL, timeout=60)
    line = assert_refused(result, given)
    assert "raster has no CRS" in line and f"gdal_edit.py -a_srs EPSG:326xx {given} " in line
    assert "/vsicurl/" not in line and "Warning" not in result.stderr


@pytest.mark.slow
def test_remote_zip_inspect_and_feature_stack_equal_the_folder(zipped, tmp_path: Path) -> None:
    """``geoseg inspect`` (its default sample) and a whole 60 m feature stack, over HTTP and from the folder."""
    server, folder = zipped
    archive = url(server, f"{NAME}.zip")
    expected, result = run_inproc("inspect", folder), run_inproc("inspect", archive)
    assert expected.returncode == 0 and result.returncode == 0, result.stderr + expected.stderr
    assert result.stdout.splitlines()[0].endswith(f"({archive})")
    assert result.stdout.splitlines()[1:] == expected.stdout.splitlines()[1:]
    assert "sample" in result.stdout and "Warning" not in result.stderr
    for name, source in (("remote", archive), ("local", folder)):
        done = run_inproc("features", source, "--out", tmp_path / f"{name}.tif", "--recipe", "rgb",
                          "--resolution", "60", "--no-progress")
        assert done.returncode == 0, done.stdout + done.stderr
    with rasterio.open(tmp_path / "remote.tif") as r, rasterio.open(tmp_path / "local.tif") as lo:
        assert r.shape == lo.shape == (1830, 1830) and r.count == 3
        assert r.read().tobytes() == lo.read().tobytes() and (r.read_masks(1) == lo.read_masks(1)).all()
