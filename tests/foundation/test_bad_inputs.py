"""Bad input: one error class, a one-line message naming the file and the fix, nothing written."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from geoseg.config import load_catalog
from geoseg.errors import (
    BandError,
    CatalogError,
    CorruptRasterError,
    CRSMismatchError,
    MissingFileError,
)
from geoseg.features import write_feature_stack
from geoseg.io import open_scene


@pytest.fixture()
def scene_copy(demo_small, tmp_path: Path) -> Path:
    dst = tmp_path / "scene"
    shutil.copytree(demo_small.scene, dst)
    return dst


def _band(folder: Path, band: str) -> Path:
    return next(folder.glob(f"*_{band}_*.tif"))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "geoseg", *args], capture_output=True, text=True)


def test_missing_band(scene_copy: Path, tmp_path: Path) -> None:
    _band(scene_copy, "B08").unlink()
    scene = open_scene(scene_copy)
    out = tmp_path / "stack.tif"
    with pytest.raises(BandError, match="no band B08") as err:
        write_feature_stack(scene, out, progress=False)
    assert str(scene_copy) in str(err.value)
    assert not out.exists() and not list(tmp_path.glob(".stack*"))


def test_corrupt_file(scene_copy: Path) -> None:
    _band(scene_copy, "B03").write_bytes(b"II*\x00 this is not a tiff" * 10)
    with pytest.raises(CorruptRasterError, match="not a readable raster") as err:
        open_scene(scene_copy)
    assert "B03" in str(err.value)


def test_empty_file(scene_copy: Path) -> None:
    _band(scene_copy, "B04").write_bytes(b"")
    with pytest.raises(CorruptRasterError, match="empty"):
        open_scene(scene_copy)


def test_crs_mismatch_between_bands(scene_copy: Path) -> None:
    path = _band(scene_copy, "B05")
    with rasterio.open(path, "r+") as ds:
        ds.crs = CRS.from_epsg(32632)
    with pytest.raises(CRSMismatchError, match="B05"):
        open_scene(scene_copy)


def test_missing_scene(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        open_scene(tmp_path / "nope.tif")


def test_wrong_band_count_without_names(tmp_path: Path) -> None:
    path = tmp_path / "five.tif"
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 5, "dtype": "uint16",
               "crs": "EPSG:32633", "transform": rasterio.transform.from_origin(0, 80, 10, 10)}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.ones((5, 8, 8), dtype=np.uint16))
    with pytest.raises(BandError, match="5 bands without band descriptions"):
        open_scene(path)


def test_unknown_catalog_key_names_the_closest(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "data_catalog.yaml").read_text()
    bad = tmp_path / "catalog.yaml"
    bad.write_text(text.replace("    recipe: s2_24\n    ignore_codes: [0]\n    classes:", "    recipie: s2_24\n    classes:", 1))
    with pytest.raises(CatalogError) as err:
        load_catalog(bad)
    message = str(err.value)
    assert str(bad) in message and "recipie" in message and "did you mean 'recipe'" in message
    assert "\n" not in message


def test_cli_prints_one_line_and_exits_2(scene_copy: Path, tmp_path: Path) -> None:
    _band(scene_copy, "B08").unlink()
    out = tmp_path / "stack.tif"
    result = _cli("features", str(scene_copy), "--out", str(out))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "B08" in lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_cli_missing_file_and_unknown_dataset(tmp_path: Path) -> None:
    result = _cli("inspect", str(tmp_path / "missing.SAFE"))
    assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr
