"""Bad input: one-line errors naming the file and the fix, and no store left looking complete."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from geoseg.cli.main import main
from geoseg.errors import (
    CatalogError,
    ConfigError,
    CRSMismatchError,
    EmptyAreaError,
    LabelError,
    MissingFileError,
)
from geoseg.tiling import CubeStore, tile_dataset
from tests.tiling._tiling_helpers import DEMO_PARAMS, write_catalog


def _cli(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


def test_unknown_dataset(demo_catalog, tmp_path, capsys) -> None:
    with pytest.raises(CatalogError, match="no dataset 'demo48'.*demo480"):
        tile_dataset(demo_catalog, "demo48", tmp_path / "out", progress=False)
    code, err = _cli(["tile", "--catalog", str(demo_catalog), "--dataset", "nope", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and err.count("\n") == 1 and "no dataset 'nope'" in err and str(demo_catalog) in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()


def test_label_codes_outside_the_class_map(demo480, tmp_path, capsys) -> None:
    catalog = write_catalog(tmp_path / "c.yaml", demo480.scene, {"raster": str(demo480.labels)},
                            classes=[(1, "water", "#0000ff"), (2, "forest", "#00ff00"), (3, "crop", "#ffff00")])
    with pytest.raises(LabelError, match=r"label codes \[4, 5, 6\] are not in the class map \[1, 2, 3\]") as err:
        tile_dataset(catalog, "demo480", tmp_path / "out", progress=False)
    assert str(demo480.labels) in str(err.value) and "ignore_codes" in str(err.value)
    code, text = _cli(["tile", "--catalog", str(catalog), "--dataset", "demo480", "--out", str(tmp_path / "out")],
                      capsys)
    assert code == 2 and "[4, 5, 6]" in text and text.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_labels_raster_that_cannot_be_reprojected(demo480, tmp_path) -> None:
    with rasterio.open(demo480.labels) as src:
        codes, aff = src.read(1), src.transform
    path = tmp_path / "labels_no_crs.tif"
    with rasterio.open(path, "w", driver="GTiff", width=300, height=300, count=1, dtype="uint8",
                       transform=aff @ Affine.translation(10, 10)) as dst:
        dst.write(codes[:300, :300], 1)
    catalog = write_catalog(tmp_path / "c.yaml", demo480.scene, {"raster": str(path)})
    with pytest.raises(CRSMismatchError, match="no CRS and is not on the scene's grid") as err:
        tile_dataset(catalog, "demo480", tmp_path / "out", progress=False)
    assert str(path) in str(err.value) and "gdal_edit.py -a_srs EPSG:32633" in str(err.value)


def test_empty_selection_leaves_no_store(demo480, client, tmp_path) -> None:
    with rasterio.open(next(demo480.scene.glob("*B02*"))) as ref:
        profile = {"driver": "GTiff", "width": ref.width, "height": ref.height, "count": 1, "dtype": "uint8",
                   "crs": ref.crs, "transform": ref.transform}
    mask = tmp_path / "clouds.tif"
    with rasterio.open(mask, "w", **profile) as dst:
        dst.write(np.ones((profile["height"], profile["width"]), np.uint8), 1)  # every pixel invalid
    catalog = write_catalog(tmp_path / "c.yaml", demo480.scene, {"raster": str(demo480.labels)},
                            extra_scene={"mask": str(mask)})
    out = tmp_path / "out"
    with pytest.raises(EmptyAreaError, match=r"no cube of dataset 'demo480' reaches --min-valid 0.2 \(81 candidates"):
        tile_dataset(catalog, "demo480", out, client=client, progress=False, **DEMO_PARAMS)
    assert not out.exists()
    with pytest.raises(MissingFileError, match="no CubeStore here"):
        CubeStore.open(out)


def test_bad_options(demo_catalog, tmp_path, capsys) -> None:
    with pytest.raises(ConfigError, match="--overlap: 64 must be >= 0 and smaller than --cube-size 64"):
        tile_dataset(demo_catalog, "demo480", tmp_path / "out", cube_size=64, overlap=64, progress=False)
    with pytest.raises(ConfigError, match="must be three non-negative numbers summing to 1"):
        tile_dataset(demo_catalog, "demo480", tmp_path / "out", split=(0.8, 0.3, 0.1), progress=False)
    with pytest.raises(ConfigError, match="min-valid 1.5"):
        tile_dataset(demo_catalog, "demo480", tmp_path / "out", min_valid=1.5, progress=False)
    code, err = _cli(["tile", "--dataset", "demo480", "--out", "x", "--catalog", str(demo_catalog), "--workers", "2",
                      "--scheduler", "tcp://127.0.0.1:8786"], capsys)
    assert code == 2 and "not both" in err
    code, err = _cli(["tile", "--dataset", "demo480", "--out", "x", "--catalog", str(demo_catalog),
                      "--split", "0.7,0.3"], capsys)
    assert code == 2 and "three fractions" in err
    assert not (tmp_path / "out").exists()
