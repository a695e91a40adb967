"""Damaged CubeStores, model bundles and labels (issue 12): one line, exit 2, nothing lost or written.

Every case damages a private copy of one small demo CubeStore and one tiny model bundle (built
once per module), runs the command as a user would and checks: exit code 2, exactly one
``error:`` line naming the damaged file (for chunks: the store, the cube id and the chunk
file), no traceback, nothing new anywhere under the test folder, and every input file — the
damaged store or bundle included — byte-identical afterwards.

Commands that import torch (predict, evaluate, export, train) run in this process through
the CLI's own ``main`` (a fresh interpreter costs ~5 s of imports each); the others run as a
subprocess. ``test_weights_refused_by_the_real_command`` runs a torch command as a
subprocess too, so the real entry point is covered for both kinds.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import DEMO_STORE_PARAMS, make_demo_store
from tests.reliability.conftest import (
    assert_nothing_new,
    assert_refused,
    assert_unchanged,
    run_cli,
    run_inproc,
    snapshot,
    truncate,
)

TORCH_COMMANDS = {"predict", "evaluate", "export", "train"}
TILE_ARGS = ["--cube-size", str(DEMO_STORE_PARAMS["cube_size"]), "--overlap", str(DEMO_STORE_PARAMS["overlap"]),
             "--min-valid", str(DEMO_STORE_PARAMS["min_valid"]), "--split-block", str(DEMO_STORE_PARAMS["split_block"]),
             "--seed", str(DEMO_STORE_PARAMS["seed"]), "--workers", "1"]
CLASS_NAMES = ["water", "forest", "cropland", "grassland", "built-up", "bare soil"]


def geoseg(command: str, *args: str | Path) -> subprocess.CompletedProcess:
    runner = run_inproc if command in TORCH_COMMANDS else run_cli
    return runner(*command.split(), *args)


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo scene tiled into a small store (9 cubes of 64 px) plus a tiny UNet bundle."""
    from tests.predict._predict_helpers import DEMO_CLASSES, unet_bundle

    root = tmp_path_factory.mktemp("rel-store-bundle")
    make_demo_store(root, size=192, seed=1)
    unet_bundle(root / "bundle", DEMO_CLASSES, window=64)
    return root


@pytest.fixture()
def work(base: Path, tmp_path: Path) -> Path:
    """A private copy of the store, bundle, scene and catalog (the catalog still names the base scene)."""
    dst = tmp_path / "in"
    shutil.copytree(base, dst)
    return dst


def scene_of(root: Path) -> Path:
    return next(p for p in (root / "scene").iterdir() if p.is_dir())


def command_args(command: str, w: Path, out: Path) -> list[str | Path]:
    return {
        "predict": ["--model", w / "bundle", "--scene", scene_of(w), "--out", out / "lc.tif", "--no-progress"],
        "evaluate": [w / "bundle", w / "store", "--out", out / "eval"],
        "export": [w / "bundle", "--out", out / "model.onnx"],
        "train": [w / "store", "--out", out / "model", "--epochs", "1", "--encoder", "test_resnet",
                  "--num-workers", "0", "--no-progress"],
        "cubes info": [w / "store"],
        "cubes export": [w / "store", "--out", out / "cubes.npy", "--with-labels"],
        "tile": ["--catalog", w / "catalog.yaml", "--dataset", "demo", "--out", w / "store", *TILE_ARGS],
    }[command]


def refused_cleanly(tmp_path: Path, command: str, w: Path, *names: str | Path) -> str:
    """Run ``command`` on the damaged copy; check the refusal, that nothing appeared and nothing changed."""
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    result = geoseg(command, *command_args(command, w, out))
    line = assert_refused(result, *names)
    assert_unchanged(before)
    assert_nothing_new(tmp_path, before)
    assert not out.exists()
    return line


# ---------------------------------------------------------------------------------------- 1. bundles
def _garble_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:64] = b"\xff" * 64
    path.write_bytes(bytes(data))


WEIGHT_DAMAGE = {"truncated": lambda p: truncate(p, 0.5), "cut-by-one-byte": lambda p: truncate(p, 1 - 1 / p.stat().st_size),
                 "garbled-header": _garble_header, "empty": lambda p: p.write_bytes(b"")}


@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_damaged_weights(work: Path, tmp_path: Path, command: str) -> None:
    weights = work / "bundle" / "model.safetensors"
    truncate(weights, 0.5)
    line = refused_cleanly(tmp_path, command, work, weights)
    assert "damaged model bundle" in line and "SafetensorError" not in line


@pytest.mark.parametrize("damage", ["cut-by-one-byte", "garbled-header", "empty"])
def test_other_weight_damage(work: Path, tmp_path: Path, damage: str) -> None:
    weights = work / "bundle" / "model.safetensors"
    WEIGHT_DAMAGE[damage](weights)
    refused_cleanly(tmp_path, "evaluate", work, weights)


@pytest.mark.parametrize(("command", "damage"), [("predict", "garbage"), ("evaluate", "list"), ("export", "missing"),
                                                 ("predict", "binary")])
def test_damaged_bundle_spec(work: Path, tmp_path: Path, command: str, damage: str) -> None:
    spec = work / "bundle" / "config.json"
    if damage == "missing":
        spec.unlink()
    else:
        spec.write_bytes({"garbage": b'{"model": {"name": ', "list": b"[1, 2]", "binary": b"\x89\xff\x00\x13"}[damage])
    refused_cleanly(tmp_path, command, work, spec)


def test_damaged_resume_config(work: Path, tmp_path: Path) -> None:
    """A training run's config.yaml (read when resuming) that is not YAML any more."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    (run / "config.yaml").write_text("model: [unet\n  encoder: {\n")
    from geoseg.train.config import TRAIN_KIND
    from geoseg.utils.outputs import mark_folder

    mark_folder(run, TRAIN_KIND, ["checkpoints", "config.yaml"])  # a run geoseg wrote, then damaged
    before = snapshot(tmp_path)
    result = run_inproc("train", work / "store", "--out", run, "--resume", "--epochs", "1", "--encoder", "test_resnet")
    assert_refused(result, run / "config.yaml")
    assert_unchanged(before)
    assert_nothing_new(tmp_path, before)


def test_weights_refused_by_the_real_command(work: Path, tmp_path: Path) -> None:
    """The same refusal through a fresh ``geoseg`` process (the console entry point)."""
    weights = work / "bundle" / "model.safetensors"
    truncate(weights, 0.5)
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    assert_refused(run_cli(*["predict", *command_args("predict", work, out)]), weights)
    assert_unchanged(before)
    assert_nothing_new(tmp_path, before)


# ---------------------------------------------------------------------------------------- 2. manifest
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
@pytest.mark.parametrize("command", ["cubes info", "train", "tile"])
def test_damaged_manifest(work: Path, tmp_path: Path, command: str, damage: str) -> None:
    manifest = work / "store" / "manifest.json"
    if damage == "garbage":
        manifest.write_bytes(b"\x00\x01 this is not json")
    else:
        truncate(manifest, 0.5)
    refused_cleanly(tmp_path, command, work, manifest)


def test_damaged_manifest_survives_overwrite(work: Path, tmp_path: Path) -> None:
    """``tile --overwrite`` cannot tell what a store with a garbage manifest holds: it refuses, deletes nothing."""
    manifest = work / "store" / "manifest.json"
    manifest.write_text('{"complete": tr')
    before = snapshot(tmp_path)
    line = assert_refused(run_cli("tile", *command_args("tile", work, tmp_path / "out"), "--overwrite"), manifest)
    assert "delete" in line  # the fix is the user's to make
    assert_unchanged(before)
    assert_nothing_new(tmp_path, before)


def test_manifest_without_keys(work: Path, tmp_path: Path) -> None:
    manifest = work / "store" / "manifest.json"
    manifest.write_text('{"complete": true}\n')
    refused_cleanly(tmp_path, "cubes export", work, manifest)


# ---------------------------------------------------------------------------------------- 3./4. chunks
def _chunk(w: Path, array: str, cube: int) -> Path:
    suffix = ".0.0.0" if array == "cubes" else ".0.0"
    return w / "store" / "cubes.zarr" / array / f"c.{cube}{suffix}"


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
@pytest.mark.parametrize("command", ["evaluate", "cubes export", "train", "cubes info", "tile"])
def test_damaged_cube_chunk(work: Path, tmp_path: Path, command: str, damage: str) -> None:
    chunk = _chunk(work, "cubes", 3)
    truncate(chunk, 0.5) if damage == "truncated" else chunk.unlink()
    line = refused_cleanly(tmp_path, command, work, work / "store", "cube 3", "cubes.zarr/cubes/c.3.0.0.0")
    assert ("is missing" if damage == "deleted" else "bytes instead of") in line
    assert "--overwrite" in line


@pytest.mark.parametrize(("command", "damage"), [("train", "deleted"), ("evaluate", "truncated"),
                                                 ("cubes export", "emptied")])
def test_damaged_label_chunk(work: Path, tmp_path: Path, command: str, damage: str) -> None:
    chunk = _chunk(work, "labels", 5)
    {"deleted": chunk.unlink, "truncated": lambda: truncate(chunk, 0.5), "emptied": lambda: chunk.write_bytes(b"")}[damage]()
    refused_cleanly(tmp_path, command, work, work / "store", "cube 5", "cubes.zarr/labels/c.5.0.0")


def test_several_damaged_chunks_are_counted(work: Path, tmp_path: Path) -> None:
    _chunk(work, "cubes", 6).unlink()
    truncate(_chunk(work, "cubes", 2), 0.9)
    _chunk(work, "labels", 7).unlink()
    line = refused_cleanly(tmp_path, "cubes info", work, "cube 2", "c.2.0.0.0")
    assert "2 more damaged chunks (cubes 6, 7)" in line


def test_chunk_lost_after_open_is_not_read_as_data(work: Path) -> None:
    """A chunk deleted while a store is open reads as the NaN fill value: refused, never zeros."""
    from geoseg.errors import CorruptStoreError
    from geoseg.tiling import CubeStore

    store = CubeStore.open(work / "store")
    assert np.isfinite(store.read_cube(4)).all()
    _chunk(work, "cubes", 4).unlink()
    with pytest.raises(CorruptStoreError, match=r"cube 4 is missing"):
        store.read_cube(4)
    truncate(_chunk(work, "labels", 1), 0.4)
    with pytest.raises(CorruptStoreError, match=r"c\.1\.0\.0 of cube 1 cannot be read"):
        store.read_label(1)


def test_chunk_lost_under_a_dataloader_worker(work: Path) -> None:
    """Read in a DataLoader worker process, the refusal reaches the caller as the same one line."""
    from torch.utils.data import DataLoader

    from geoseg.data import CubeDataset
    from geoseg.errors import CorruptStoreError
    from geoseg.tiling import CubeStore

    store = CubeStore.open(work / "store")
    _chunk(work, "cubes", 2).unlink()
    loader = DataLoader(CubeDataset(store, [1, 2]), batch_size=2, num_workers=1)
    with pytest.raises(CorruptStoreError) as caught:
        next(iter(loader))
    message = str(caught.value)
    assert message.startswith(f"{work / 'store'}: damaged CubeStore: the chunk file cubes.zarr/cubes/c.2.0.0.0 of cube 2")
    assert "Traceback" not in message and "DataLoader" not in message


def test_tile_overwrite_rebuilds_a_damaged_store(work: Path, tmp_path: Path, base: Path) -> None:
    """The fix the message gives works: ``tile ... --overwrite`` rebuilds the lost chunk, bit for bit."""
    _chunk(work, "cubes", 3).unlink()
    result = run_cli("tile", *command_args("tile", work, tmp_path / "out"), "--overwrite")
    assert result.returncode == 0, result.stderr
    for array, cube in (("cubes", 3), ("cubes", 0), ("labels", 3)):
        assert _chunk(work, array, cube).read_bytes() == _chunk(base, array, cube).read_bytes()


# ---------------------------------------------------------------------------------------- intact store
def test_intact_store_trains_and_evaluates(work: Path, tmp_path: Path) -> None:
    from tests.predict._predict_helpers import DEMO_CLASSES

    assert [c.name for c in DEMO_CLASSES] == CLASS_NAMES
    out = tmp_path / "out"
    trained = run_inproc(*["train", *command_args("train", work, out)])
    assert trained.returncode == 0, trained.stderr
    assert (out / "model" / "final" / "model.safetensors").is_file()
    evaluated = run_inproc(*["evaluate", *command_args("evaluate", work, out)])
    assert evaluated.returncode == 0, evaluated.stderr
    assert "mIoU" in evaluated.stdout and (out / "eval" / "metrics.json").is_file()


# ---------------------------------------------------------------------------------------- 5./6. labels
def _label_catalog(w: Path, labels: dict, name: str = "labels.yaml") -> Path:
    catalog = yaml.safe_load((w / "catalog.yaml").read_text())
    scene = catalog["datasets"]["demo"]["scenes"][0]
    scene["path"] = str(scene_of(w))
    scene["labels"] = labels
    path = w / name
    path.write_text(yaml.safe_dump(catalog))
    return path


def _scene_grid(w: Path):
    from geoseg.io.scene import open_scene

    return open_scene(scene_of(w)).grid


def _halves(grid):
    from shapely.geometry import box

    left, bottom, right, top = grid.bounds
    mid = (left + right) / 2
    return [box(left, bottom, mid, top), box(mid, bottom, right, top)]


def _write_vector(path: Path, grid, values: dict, geoms=None, shift: float = 0.0) -> Path:
    import geopandas as gpd
    from shapely import affinity

    geoms = geoms or _halves(grid)
    gpd.GeoDataFrame(values, geometry=[affinity.translate(g, xoff=shift) for g in geoms],
                     crs=grid.crs).to_file(path)
    return path


def _tile_refused(tmp_path: Path, w: Path, catalog: Path, *names: str | Path) -> str:
    out = tmp_path / "out" / "store"
    before = snapshot(tmp_path)
    line = assert_refused(run_cli("tile", "--catalog", catalog, "--dataset", "demo", "--out", out, *TILE_ARGS), *names)
    assert_unchanged(before)
    assert_nothing_new(tmp_path, before)
    return line


def test_class_names_map_to_the_same_labels_as_codes(work: Path) -> None:
    from rasterio.windows import Window

    from geoseg.io.labels import LabelMap, prepare_labels

    grid = _scene_grid(work)
    vector = _write_vector(work / "named.gpkg", grid, {"code": [1, 5], "name": ["WATER", " Built-Up "],
                                                       "text_code": ["1", "5"]})
    label_map = LabelMap(tuple(range(1, 7)), (0,), tuple(CLASS_NAMES))
    window = Window(0, 0, grid.width, grid.height)
    by_code = prepare_labels(None, vector, grid, label_map, column="code").read(window)
    assert set(np.unique(by_code)) == {0, 4}
    for column in ("name", "text_code"):
        np.testing.assert_array_equal(prepare_labels(None, vector, grid, label_map, column=column).read(window), by_code)


def test_unknown_class_name_lists_the_valid_ones(work: Path, tmp_path: Path) -> None:
    vector = _write_vector(work / "named.gpkg", _scene_grid(work), {"cls": ["water", "pasture"]})
    catalog = _label_catalog(work, {"vector": str(vector), "column": "cls"})
    line = _tile_refused(tmp_path, work, catalog, vector, "pasture")
    assert all(repr(name) in line for name in CLASS_NAMES)


@pytest.mark.parametrize("kind", ["vector", "raster"])
def test_labels_that_miss_the_scene_are_refused_alike(work: Path, tmp_path: Path, kind: str) -> None:
    import rasterio
    from affine import Affine

    grid = _scene_grid(work)
    if kind == "vector":
        labels = _write_vector(work / "far.gpkg", grid, {"code": [1, 2]}, shift=50_000)
        source = {"vector": str(labels), "column": "code"}
    else:
        labels = work / "far.tif"
        a = grid.affine
        with rasterio.open(labels, "w", driver="GTiff", width=grid.width, height=grid.height, count=1, dtype="uint8",
                           crs=grid.crs, transform=Affine(a.a, a.b, a.c + 50_000, a.d, a.e, a.f)) as ds:
            ds.write(np.ones((1, grid.height, grid.width), np.uint8))
        source = {"raster": str(labels)}
    line = _tile_refused(tmp_path, work, _label_catalog(work, source), labels)
    assert "do not overlap the scene" in line


@pytest.mark.parametrize("kind", ["vector", "raster"])
def test_codes_outside_the_class_map(work: Path, tmp_path: Path, kind: str) -> None:
    import rasterio

    if kind == "vector":
        labels = _write_vector(work / "codes.gpkg", _scene_grid(work), {"code": [2, 9]})
        source = {"vector": str(labels), "column": "code"}
    else:
        labels = work / "codes.tif"
        with rasterio.open(work / "scene" / "labels.tif") as src:
            profile, codes = src.profile, src.read(1)
        codes[:5, :5] = 9
        with rasterio.open(labels, "w", **profile) as dst:
            dst.write(codes, 1)
        source = {"raster": str(labels)}
    line = _tile_refused(tmp_path, work, _label_catalog(work, source), labels, "[9]")
    assert "not in the class map" in line


def test_bow_tie_is_repaired_with_a_warning_and_burns(work: Path, tmp_path: Path) -> None:
    """A self-intersecting polygon is made valid (with one warning naming the file) and labels its pixels."""
    from shapely.geometry import Polygon

    grid = _scene_grid(work)
    left, bottom, right, top = grid.bounds
    bow_tie = Polygon([(left, bottom), (right, top), (right, bottom), (left, top)])
    assert not bow_tie.is_valid
    vector = _write_vector(work / "bowtie.gpkg", grid, {"cls": ["Cropland"]}, geoms=[bow_tie])
    out = tmp_path / "out" / "store"
    result = run_cli("tile", "--catalog", _label_catalog(work, {"vector": str(vector), "column": "cls"}),
                     "--dataset", "demo", "--out", out, *TILE_ARGS)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "make_valid" in line]
    assert len(warnings) == 1 and str(vector) in warnings[0] and "repaired 1 invalid" in warnings[0], result.stderr
    from geoseg.tiling import CubeStore

    store = CubeStore.open(out)
    labels = store.read_labels(store.ids())
    assert set(np.unique(labels)) == {2, 255}  # cropland (index 2) inside the two triangles, the rest ignored
    assert (labels == 2).sum() > 0.2 * labels.size
