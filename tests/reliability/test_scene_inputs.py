"""Damaged and unusual scene inputs (issue 12): exit 2, one line naming the file, nothing written.

Each case damages a private copy of the demo scene or of a real Sentinel-2 sample from
../shared/data, runs the real command (``inspect``, ``features``, ``predict``, ``tile`` with a
small catalog) and checks: exit code 2, exactly one ``error:`` line naming the file (and what
to do), no traceback, nothing new under the test folder (no output, no temporary), and every
input file byte-identical afterwards. Scene problems are found when the scene is opened (from
headers and a decimated sample), before anything is written and before torch is imported, so
the refusals cost about a second each; a file that breaks only in the middle of a run (its
overview reads, one full-resolution tile does not) is refused the same way, naming the window,
also through the tiler's Dask worker processes.

Correct data still works: a scene stored as reflectance 0-1 read with ``--scale 1`` gives the
features of the uint16 original; ``--date`` picks one acquisition of a mixed folder; an
all-nodata scene gives its (all-zero) stack with a warning on stderr.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from rasterio.enums import Resampling

from tests.conftest import shared
from tests.reliability.conftest import (
    assert_nothing_new,
    assert_refused,
    assert_unchanged,
    band_of,
    run_cli,
    scene_of,
    snapshot,
    truncate,
)

COMMANDS = ("inspect", "features", "predict", "tile")
L2A_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
SAFE = ("s2_l2a_T29UNU_scl", "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE")
TERRAMIND = ("terramind_examples", "S2L2A", "433D_629L_3_1.tif")


# --------------------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real model bundle (UNet on timm's test_resnet, s2_24, 64 px window), saved once."""
    import torch

    from geoseg.bundle import BundleConfig, Normalization, save_bundle
    from geoseg.config.catalog import ClassDef
    from geoseg.features import get_recipe
    from geoseg.models import create_model

    torch.manual_seed(0)
    recipe = get_recipe("s2_24")
    n = recipe.num_channels
    model = create_model("unet", in_channels=n, num_classes=2, encoder="test_resnet", encoder_depth=3,
                         decoder_channels=[16, 16, 16], channel_names=list(recipe.channel_names))
    config = BundleConfig(
        model=model.spec, recipe=recipe.to_dict(), channel_names=list(recipe.channel_names),
        classes=[ClassDef(code=1, name="water", color="#1f78b4"), ClassDef(code=2, name="land", color="#1b7837")],
        normalization=Normalization(mean=[0.15] * n, std=[0.1] * n), window=64,
        mask_channels=recipe.num_mask_channels,
    )
    return save_bundle(model.eval(), config, tmp_path_factory.mktemp("rel-scene-bundle") / "bundle")


def run_command(command: str, scene: Path, tmp_path: Path, bundle: Path | None = None, *extra: str,
                catalog_keys: dict | None = None):
    """Run ``command`` on ``scene`` with its output under ``tmp_path`` (tile: via a one-scene catalog)."""
    if command == "inspect":
        return run_cli("inspect", scene, *extra)
    if command == "features":
        return run_cli("features", scene, "--out", tmp_path / "stack.tif", "--no-progress", *extra)
    if command == "predict":
        assert bundle is not None
        return run_cli("predict", "--model", bundle, "--scene", scene, "--out", tmp_path / "map.tif",
                       "--device", "cpu", "--no-progress", *extra)
    catalog = tmp_path / "catalog.yaml"
    if not catalog.exists():  # written before the snapshot by the tests that tile
        write_catalog(catalog, scene, **(catalog_keys or {}))
    return run_cli("tile", "--catalog", catalog, "--dataset", "d", "--out", tmp_path / "store", "--cube-size", "64",
                   "--overlap", "0", "--min-valid", "0.01", "--workers", "1", "--no-progress", *extra)


def write_catalog(path: Path, scene: Path, **keys) -> Path:
    path.write_text(yaml.safe_dump({"schema_version": 1, "datasets": {"d": {
        "scenes": [{"id": "s", "path": str(scene), **keys}]}}}))
    return path


def check_refused(command: str, scene: Path, tmp_path: Path, bundle: Path, *names: str | Path,
                  extra: tuple[str, ...] = (), catalog_keys: dict | None = None) -> str:
    """Run ``command`` and assert the refusal contract; returns the error line."""
    if command == "tile":
        write_catalog(tmp_path / "catalog.yaml", scene, **(catalog_keys or {}))
    before = snapshot(tmp_path)
    result = run_command(command, scene, tmp_path, bundle, *extra)
    line = assert_refused(result, *names)
    assert_nothing_new(tmp_path, before)
    assert_unchanged(before, tmp_path)
    return line


def rewrite(path: Path, data: np.ndarray | None = None, **changes) -> None:
    """Rewrite a raster in place with ``changes`` to its profile (and new ``data``), keeping its tags."""
    with rasterio.open(path) as src:
        profile, tags, descriptions = src.profile, src.tags(), src.descriptions
        array = src.read() if data is None else data
    profile.update(changes)
    if profile.get("crs") is None:
        profile.pop("crs", None)
    path.unlink()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
        dst.update_tags(**tags)
        for i, d in enumerate(descriptions, start=1):
            if d:
                dst.set_band_description(i, d)


def copy_safe(dst_root: Path) -> Path:
    """The real L2A .SAFE with only what a scene read needs: metadata, 60 m bands and SCL."""
    src = shared(*SAFE)
    dst = dst_root / src.name
    (dst).mkdir(parents=True)
    shutil.copy(src / "MTD_MSIL2A.xml", dst)
    for path in src.glob("GRANULE/*/IMG_DATA/R60m/*.jp2"):
        if any(f"_{b}_" in path.name for b in (*L2A_BANDS, "SCL")):
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    return dst


def real_multiband(tmp_path: Path) -> Path:
    dst = tmp_path / "real" / Path(*TERRAMIND).name
    dst.parent.mkdir()
    shutil.copy(shared(*TERRAMIND), dst)
    return dst


def read_stack(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.read_masks(1) > 0


# --------------------------------------------------------------------------- 1. truncated files
@pytest.mark.parametrize("command", COMMANDS)
def test_truncated_band_file(command: str, demo_copy: Path, tmp_path: Path, bundle: Path) -> None:
    band = band_of(scene_of(demo_copy), "B04")
    truncate(band)
    line = check_refused(command, scene_of(demo_copy), tmp_path, bundle, band.name)
    assert "damaged or truncated" in line


@pytest.mark.parametrize("command", COMMANDS)
def test_truncated_jp2_in_safe(command: str, tmp_path: Path, bundle: Path) -> None:
    safe = copy_safe(tmp_path / "data")
    band = next(safe.glob("GRANULE/*/IMG_DATA/R60m/*_B03_60m.jp2"))
    truncate(band, keep=0.6)  # a cut download: OpenJPEG would fill the rest with zeros if let
    check_refused(command, safe, tmp_path, bundle, band.name)


def test_truncated_multiband_geotiff(tmp_path: Path, bundle: Path) -> None:
    scene = real_multiband(tmp_path)
    truncate(scene, keep=0.7)
    check_refused("features", scene, tmp_path, bundle, scene.name)


# --------------------------------------------------------------------------- 1b. damaged mid-run
def damaged_after_overviews(path: Path, size: int = 600) -> Path:
    """A 12-band uint16 scene whose overviews read but one full-resolution tile does not.

    Opening samples the overviews (as for any large file), so the damage is found in the middle
    of the run, by the window reads: the read error of a file damaged after it was opened.
    """
    rng = np.random.default_rng(0)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": len(L2A_BANDS), "dtype": "uint16",
               "crs": "EPSG:32633", "transform": Affine(10, 0, 500000, 0, -10, 5800000), "nodata": 0,
               "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(rng.integers(300, 4000, (len(L2A_BANDS), size, size)).astype(np.uint16))
        for i, band in enumerate(L2A_BANDS, start=1):
            ds.set_band_description(i, band)
        ds.update_tags(BOA_ADD_OFFSET="0")
        ds.build_overviews([2, 4], Resampling.nearest)
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
        length = int(ds.get_tag_item("BLOCK_SIZE_1_1", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    data[offset + length // 4: offset + length // 2] = b"\xff" * (length // 2 - length // 4)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("command", COMMANDS)
def test_read_error_in_the_middle_of_a_run(command: str, tmp_path: Path, bundle: Path) -> None:
    (tmp_path / "data").mkdir()
    scene = damaged_after_overviews(tmp_path / "data" / "scene.tif")
    line = check_refused(command, scene, tmp_path, bundle, scene.name, "window")
    assert "ZIPDecode" in line or "Decoding" in line, line


def test_window_read_error_pickles_with_its_message() -> None:
    """The error crosses process boundaries (Dask workers) as itself: class, path and text."""
    import pickle

    from geoseg.errors import CorruptRasterError

    err = CorruptRasterError("cannot read window col 0, row 0", path="/data/b04.tif", hint="re-download it")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is CorruptRasterError and str(back) == str(err) and back.path == err.path


# --------------------------------------------------------------------------- 2-3. CRS
@pytest.mark.parametrize("command", COMMANDS)
def test_geotiff_without_crs(command: str, tmp_path: Path, bundle: Path) -> None:
    scene = real_multiband(tmp_path)
    rewrite(scene, crs=None)
    line = check_refused(command, scene, tmp_path, bundle, scene.name, "gdal_edit.py -a_srs")
    assert "no CRS" in line


@pytest.mark.parametrize("command", COMMANDS)
def test_geographic_crs(command: str, tmp_path: Path, bundle: Path) -> None:
    from rasterio.warp import calculate_default_transform, reproject

    src = shared(*TERRAMIND)
    scene = tmp_path / "real" / "geographic.tif"
    scene.parent.mkdir()
    with rasterio.open(src) as ds:
        transform, width, height = calculate_default_transform(ds.crs, "EPSG:4326", ds.width, ds.height, *ds.bounds)
        profile = {**ds.profile, "crs": "EPSG:4326", "transform": transform, "width": width, "height": height}
        with rasterio.open(scene, "w", **profile) as out:
            for i in range(1, ds.count + 1):
                reproject(rasterio.band(ds, i), rasterio.band(out, i), dst_crs="EPSG:4326")
    line = check_refused(command, scene, tmp_path, bundle, scene.name, "gdalwarp -t_srs EPSG:32", "-tr 10 10")
    assert "geographic CRS" in line and "projected" in line


# --------------------------------------------------------------------------- 4. wrong scale
@pytest.mark.parametrize("command", COMMANDS)
def test_uint16_scene_divided_by_100(command: str, tmp_path: Path, bundle: Path) -> None:
    scene = real_multiband(tmp_path)
    with rasterio.open(scene) as ds:
        data = ds.read()
    rewrite(scene, (data // 100).astype(data.dtype))
    line = check_refused(command, scene, tmp_path, bundle, scene.name, "--scale")
    assert "median valid value" in line and "10000" in line


def as_reflectance(demo_folder: Path) -> Path:
    """The demo scene stored as float32 reflectance 0-1 (no offset, NaN = nodata), SCL unchanged."""
    scene = scene_of(demo_folder)
    for band in L2A_BANDS:
        path = band_of(scene, band)
        with rasterio.open(path) as ds:
            dn, tags = ds.read().astype(np.float64), ds.tags()
        offset = float(tags["BOA_ADD_OFFSET"])
        reflectance = np.where(dn == 0, np.nan, (dn + offset) / 10000).astype(np.float32)
        rewrite(path, reflectance, dtype="float32", nodata=float("nan"))
        with rasterio.open(path, "r+") as ds:
            ds.update_tags(BOA_ADD_OFFSET="0")
    return scene


@pytest.mark.parametrize("command", ["inspect", "tile"])
def test_float_reflectance_without_scale(command: str, demo_copy: Path, tmp_path: Path, bundle: Path) -> None:
    scene = as_reflectance(demo_copy)
    line = check_refused(command, scene, tmp_path, bundle, scene.name, "--scale 1")
    assert "values too small" in line


def test_float_reflectance_with_scale_gives_the_same_features(demo_copy: Path, demo_scene_dir: Path,
                                                              tmp_path: Path) -> None:
    original = tmp_path / "original.tif"
    result = run_cli("features", scene_of(demo_scene_dir), "--out", original, "--no-progress")
    assert result.returncode == 0, result.stderr
    scene = as_reflectance(demo_copy)
    scaled = tmp_path / "scaled.tif"
    result = run_cli("features", scene, "--out", scaled, "--scale", "1", "--no-progress")
    assert result.returncode == 0, result.stderr
    want, want_valid = read_stack(original)
    got, got_valid = read_stack(scaled)
    assert want_valid.mean() > 0.5 and np.array_equal(got_valid, want_valid)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    with rasterio.open(scaled) as ds:
        assert ds.tags()["scale"] == "1"


def test_catalog_scale_and_date_keys(demo_copy: Path, tmp_path: Path) -> None:
    """``scale:`` and ``date:`` (a YAML date too) reach the scene; the check uses the stated scale."""
    from geoseg.config import dataset_scenes, load_catalog
    from geoseg.errors import ScaleError

    scene = as_reflectance(demo_copy)
    catalog = write_catalog(tmp_path / "catalog.yaml", scene, scale=1)
    opened = dataset_scenes(load_catalog(catalog), "d")[0].scene
    assert opened.scale == 1.0 and opened.offset.offset == 0.0
    write_catalog(catalog, scene)
    with pytest.raises(ScaleError, match="scale: 1"):
        dataset_scenes(load_catalog(catalog), "d")
    catalog.write_text(catalog.read_text().replace("id: s", "id: s\n      scale: 1\n      date: 2023-06-12"))
    assert dataset_scenes(load_catalog(catalog), "d")[0].scene.datetime == "20230612T101559"


def test_float_band_among_dn_bands(demo_copy: Path, tmp_path: Path, bundle: Path) -> None:
    """One band file replaced by reflectance 0-1 (float32) in a folder of uint16 DN: refused by name."""
    band = band_of(scene_of(demo_copy), "B04")
    with rasterio.open(band) as ds:
        dn = ds.read().astype(np.float64)
    rewrite(band, ((dn - 1000) / 10000).astype(np.float32), dtype="float32")
    line = check_refused("inspect", scene_of(demo_copy), tmp_path, bundle, band.name)
    assert "float32" in line and "reflectance" in line


# --------------------------------------------------------------------------- 5. mixed acquisitions
def mix_acquisitions(demo_folder: Path, keep_original: bool = False) -> tuple[Path, Path]:
    scene = scene_of(demo_folder)
    b04 = band_of(scene, "B04")
    old = b04.with_name(b04.name.replace("20230612T101559", "20160612T101559"))
    (shutil.copy if keep_original else shutil.move)(b04, old)
    return scene, old


@pytest.mark.parametrize("command", COMMANDS)
def test_two_acquisitions_in_one_folder(command: str, demo_copy: Path, tmp_path: Path, bundle: Path) -> None:
    scene, _ = mix_acquisitions(demo_copy)
    line = check_refused(command, scene, tmp_path, bundle, scene.name, "20160612T101559", "20230612T101559",
                         "--datetime")
    assert "acquisitions" in line


def test_date_selects_one_acquisition(demo_copy: Path, tmp_path: Path) -> None:
    scene, _ = mix_acquisitions(demo_copy, keep_original=True)
    before = snapshot(demo_copy)
    result = run_cli("inspect", scene, "--date", "2023-06-12")
    assert result.returncode == 0, result.stderr
    assert "acquired 20230612T101559" in result.stdout and "B04@10m" in result.stdout
    iso = run_cli("inspect", scene, "--datetime", "2023-06-12T10:15:59Z")
    assert iso.returncode == 0, iso.stderr
    assert "acquired 20230612T101559" in iso.stdout
    refused = run_cli("inspect", scene, "--date", "20200101")
    assert "no band files of acquisition '20200101'" in assert_refused(refused, scene.name)
    assert_unchanged(before, demo_copy)


def test_datetime_in_iso_8601_and_as_a_catalog_key(demo_copy: Path, tmp_path: Path) -> None:
    """STAC and most tools write ISO 8601 (``2023-06-12T10:15:59.024Z``): it selects the same acquisition."""
    from geoseg.config import dataset_scenes, load_catalog
    from geoseg.io import open_scene

    scene, _ = mix_acquisitions(demo_copy, keep_original=True)
    assert open_scene(scene, date="2023-06-12T10:15:59.024Z").datetime == "20230612T101559"
    catalog = write_catalog(tmp_path / "catalog.yaml", scene)
    catalog.write_text(catalog.read_text().replace("id: s", "id: s\n      datetime: 2023-06-12T10:15:59Z"))
    opened = dataset_scenes(load_catalog(catalog), "d")[0].scene
    assert opened.datetime == "20230612T101559" and "20230612T101559" in opened.bands["B04"].path


# --------------------------------------------------------------------------- 6. a stack where a band file should be
@pytest.fixture(scope="module")
def feature_stack_file(demo_scene_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 24-band float32 feature stack of the demo scene (what features --out BAND would write)."""
    from geoseg.features import write_feature_stack
    from geoseg.io import open_scene

    out = tmp_path_factory.mktemp("rel-scene-stack") / "stack.tif"
    return write_feature_stack(open_scene(scene_of(demo_scene_dir)), out, progress=False)


@pytest.mark.parametrize("command", COMMANDS)
def test_feature_stack_in_place_of_a_band_file(command: str, demo_copy: Path, tmp_path: Path, bundle: Path,
                                               feature_stack_file: Path) -> None:
    band = band_of(scene_of(demo_copy), "B04")
    shutil.copy(feature_stack_file, band)
    line = check_refused(command, scene_of(demo_copy), tmp_path, bundle, band.name)
    assert "holds 24" in line and "one band" in line


def test_multiband_file_in_a_safe(tmp_path: Path, bundle: Path) -> None:
    safe = copy_safe(tmp_path / "data")
    band = next(safe.glob("GRANULE/*/IMG_DATA/R60m/*_B05_60m.jp2"))
    tci = band.with_name(band.name.replace("_B05_", "_B05_stack_").replace(".jp2", ".tif"))
    band.unlink()
    shutil.copy(shared(*TERRAMIND), tci)  # 12 bands under a band file's name
    check_refused("inspect", safe, tmp_path, bundle, tci.name, "one band")


# --------------------------------------------------------------------------- 7. all no-data
def test_all_nodata_scene_warns(demo_copy: Path, tmp_path: Path) -> None:
    """``features`` still writes the (all-zero, fully masked) stack, and says so on stderr."""
    scene = scene_of(demo_copy)
    for band in L2A_BANDS:
        path = band_of(scene, band)
        with rasterio.open(path) as ds:
            zeros = np.zeros((ds.count, ds.height, ds.width), dtype=ds.dtypes[0])
        rewrite(path, zeros)
    out = tmp_path / "stack.tif"
    result = run_cli("features", scene, "--out", out, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "no valid pixel" in line]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING") and str(out) in warnings[0], result.stderr
    data, valid = read_stack(out)
    assert not valid.any() and not data.any()


# --------------------------------------------------------------------------- the API says the same
@pytest.mark.parametrize("damage", ["truncate", "no_crs"])
def test_open_scene_refuses_before_anything_is_read(damage: str, demo_copy: Path) -> None:
    from geoseg.errors import CorruptRasterError, CRSMismatchError
    from geoseg.io import open_scene

    band = band_of(scene_of(demo_copy), "B8A")
    expected: Callable = {"truncate": lambda: truncate(band), "no_crs": lambda: rewrite(band, crs=None)}[damage]
    expected()
    error = CorruptRasterError if damage == "truncate" else CRSMismatchError
    with pytest.raises(error) as info:
        open_scene(scene_of(demo_copy))
    assert info.value.path == str(band) and "\n" not in str(info.value)
