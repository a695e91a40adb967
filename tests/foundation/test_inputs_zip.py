"""Scenes outside a local folder (issue 14): a ``.SAFE.zip`` read in place, ``/vsi`` paths, URLs.

The real L2A product of ../shared/data is zipped by the test (nothing is unpacked when it is
read): the zip gives the same bands, grid, offset decision and a bit-identical feature stack
as the folder. ``geoseg inspect`` on a zipped (small, generated) ``.SAFE`` prints the facts of
the folder; the full-size real product is not inspected through the CLI here, because a full
inspect of it costs about 15 s whether zipped or not. A URL is mapped to GDAL's ``/vsis3/``,
``/vsicurl/``, ... paths and, without network, fails in well under a second with one error
line naming the path as written.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

from geoseg.errors import GeosegError, MissingFileError
from geoseg.features import get_recipe, read_features
from geoseg.features.recipes import Recipe
from geoseg.io import open_scene
from geoseg.io.raster import gdal_path, is_virtual
from tests.conftest import shared
from tests.reliability.conftest import assert_refused, run_inproc

SAFE = ("s2_l2a_T29UNU_scl", "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE")
OFFLINE = {"AWS_NO_SIGN_REQUEST": "YES", "GDAL_HTTP_TIMEOUT": "2", "GDAL_HTTP_CONNECTTIMEOUT": "2",
           "GDAL_HTTP_MAX_RETRY": "0", "AWS_REGION": "us-east-1"}


def _recipe_60m() -> Recipe:
    """s2_24 on the bands of this 60 m-limited product: B8A (and B09) stand in for B08."""
    data = get_recipe("s2_24").to_dict()
    data["name"], data["bands"] = "s2_24_60m", [b for b in data["bands"] if b != "B08"] + ["B09"]
    data["indices"] = {k: v.replace("B08", "B8A") for k, v in data["indices"].items()}
    return Recipe.from_dict(data)


def _zip(folder: Path, archive: Path, method: int = zipfile.ZIP_STORED, top: bool = True) -> Path:
    """``folder`` zipped as ESA ships it: every member under ``<folder name>/`` (``top``), or at the root."""
    with zipfile.ZipFile(archive, "w", method) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                rel = f.relative_to(folder).as_posix()
                zf.write(f, f"{folder.name}/{rel}" if top else rel)
    return archive


@pytest.fixture(scope="module")
def real_zip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = shared(*SAFE)
    return folder, _zip(folder, tmp_path_factory.mktemp("zip") / f"{folder.name}.zip")


def test_safe_zip_reads_like_the_folder(real_zip: tuple[Path, Path]) -> None:
    folder, archive = real_zip
    unpacked, zipped = open_scene(folder), open_scene(archive)
    assert zipped.layout == unpacked.layout == "safe"
    assert (zipped.level, zipped.scene_id, zipped.datetime) == (unpacked.level, unpacked.scene_id, unpacked.datetime)
    assert list(zipped.bands) == list(unpacked.bands)
    assert zipped.grid == unpacked.grid
    assert zipped.offset == unpacked.offset and zipped.offset.source == "metadata"
    assert zipped.facts == unpacked.facts
    assert zipped.scl is not None and unpacked.scl is not None and zipped.scl.grid == unpacked.scl.grid
    assert zipped.path == str(archive)  # what outputs are checked against (never written over)
    assert all(b.path.startswith("/vsizip/") for b in zipped.bands.values())  # read in place, nothing unpacked
    assert sorted(p.name for p in archive.parent.iterdir()) == [archive.name]
    window = Window(5400, 3000, 300, 200)  # 10 m grid, across valid land, cloud and the 60 m band edges
    recipe = _recipe_60m()
    expected, expected_valid = read_features(unpacked, window, recipe)
    got, valid = read_features(zipped, window, recipe)
    assert expected.shape == (recipe.num_channels, 200, 300)
    assert expected_valid.any() and not expected_valid.all()
    np.testing.assert_array_equal(valid, expected_valid)
    assert got.tobytes() == expected.tobytes()  # bit for bit


def test_explicit_vsizip_path(real_zip: tuple[Path, Path]) -> None:
    folder, archive = real_zip
    given = f"/vsizip/{archive}/{folder.name}"
    scene = open_scene(given, resolution=60)
    assert scene.path == given and scene.layout == "safe" and scene.level == "L2A"
    assert scene.offset == open_scene(folder, resolution=60).offset
    with pytest.raises(MissingFileError, match="holds no"):
        open_scene(f"/vsizip/{archive}/NOPE.SAFE")


def test_cli_inspect_of_a_zipped_safe(tmp_path: Path) -> None:
    from geoseg.demo import generate_demo_scene

    demo = generate_demo_scene(tmp_path / "demo", size=120, layout="safe", progress=False)
    folder = Path(demo.scene)
    plain, flat = tmp_path / f"{folder.name}.zip", tmp_path / "flat.zip"
    _zip(folder, plain, zipfile.ZIP_DEFLATED)
    _zip(folder, flat, top=False)  # members at the root of the archive
    expected = run_inproc("inspect", folder)
    assert expected.returncode == 0, expected.stderr
    for archive in (plain, flat):
        result = run_inproc("inspect", archive)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"({archive})" in result.stdout.splitlines()[0]
        assert result.stdout.splitlines()[1:] == expected.stdout.splitlines()[1:]
    broken = tmp_path / "broken.SAFE.zip"
    broken.write_bytes(plain.read_bytes()[:200])
    assert "re-download" in assert_refused(run_inproc("inspect", broken), broken)
    assert_refused(run_inproc("inspect", tmp_path / "missing.SAFE.zip"), tmp_path / "missing.SAFE.zip")


@pytest.mark.parametrize(("given", "mapped"), [
    ("s3://bucket/key/b04.tif", "/vsis3/bucket/key/b04.tif"),
    ("gs://bucket/b04.tif", "/vsigs/bucket/b04.tif"),
    ("az://container/b04.tif", "/vsiaz/container/b04.tif"),
    ("https://example.org/a/b04.tif", "/vsicurl/https://example.org/a/b04.tif"),
    ("http://127.0.0.1:8000/b04.tif", "/vsicurl/http://127.0.0.1:8000/b04.tif"),
    ("/vsicurl/https://example.org/b04.tif", "/vsicurl/https://example.org/b04.tif"),
    ("/vsizip//data/x.SAFE.zip/x.SAFE", "/vsizip//data/x.SAFE.zip/x.SAFE"),
    ("scene/b04.tif", "scene/b04.tif"),
])
def test_url_mapping(given: str, mapped: str) -> None:
    assert gdal_path(given) == mapped
    assert is_virtual(given) == (given != "scene/b04.tif")


def test_unsupported_scheme_is_refused() -> None:
    with pytest.raises(GeosegError, match="unsupported location ftp://"):
        open_scene("ftp://example.org/b04.tif")


def test_unreachable_remote_file_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)
    result = run_inproc("inspect", "s3://bucket/missing.tif")
    line = assert_refused(result, "s3://bucket/missing.tif")
    assert "s3:/bucket" not in line.replace("s3://bucket", "")


def test_local_paths_unchanged(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tif"
    result = run_inproc("inspect", missing)
    assert f"{missing}: scene does not exist" in assert_refused(result, missing)
    folder = tmp_path / "bands.zip"  # a folder named .zip is still a folder
    folder.mkdir()
    assert "no Sentinel-2 band files found" in assert_refused(run_inproc("inspect", folder), folder)
