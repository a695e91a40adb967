"""Nothing lost: geoseg never deletes or overwrites what it did not write, nor its own inputs.

Every case runs the real command: in a fresh process, or, for the commands that import torch
(train, evaluate, export, run), through the CLI's own ``main`` in this process (a fresh
interpreter costs ~5 s of imports each). Refusals: exit 2, one line naming the path, nothing
new written, every pre-existing file byte-identical. Accepted reruns: geoseg replaces only what
its marker or signature says it wrote; a user's file beside its outputs survives.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.reliability.conftest import (
    REPO,
    assert_nothing_new,
    assert_refused,
    assert_unchanged,
    band_of,
    run_cli,
    run_inproc,
    scene_of,
    snapshot,
    user_files,
)

TINY_TRAIN = ["--model", "unet", "--encoder", "test_resnet", "--epochs", "1", "--batch-size", "8",
              "--num-workers", "0", "--model-option", "decoder_channels=[16,16,16,8,8]"]


# ------------------------------------------------------------------------------------ shared inputs
@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import make_demo_store

    return make_demo_store(tmp_path_factory.mktemp("rel-store"), size=192, seed=4)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.predict._predict_helpers import unet_bundle

    return unet_bundle(tmp_path_factory.mktemp("rel-bundle") / "best")


@pytest.fixture(scope="module")
def multiband(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.predict._predict_helpers import write_multiband_scene

    return write_multiband_scene(tmp_path_factory.mktemp("rel-mb") / "s.tif", 96, 96)


@contextlib.contextmanager
def read_only(folder: Path):
    """Make ``folder`` unwritable, for root too (immutable attribute), restored afterwards."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode:
            pytest.skip("cannot make a folder read-only for root here (no chattr)")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)])
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


# ------------------------------------------------------------------------------------ folders
def test_demo_data_refuses_a_folder_of_user_files(tmp_path: Path) -> None:
    out = tmp_path / "d"
    (out / "sub").mkdir(parents=True)
    user_files(out)
    before = snapshot(out)
    assert_refused(run_cli("demo-data", "--out", out, "--size", "120"), out, "not written by geoseg")
    assert_unchanged(before)
    assert_nothing_new(tmp_path, snapshot(tmp_path))


@pytest.mark.parametrize("command", ["demo-data", "tile"])
def test_folder_output_that_is_a_file(command: str, tmp_path: Path, demo_copy: Path) -> None:
    out = tmp_path / "thesis.docx"
    out.write_bytes(b"PK\x03\x04 my thesis")
    before = snapshot(tmp_path)
    args = {"demo-data": ["demo-data", "--out", out, "--size", "120"],
            "tile": ["tile", "--catalog", _catalog(tmp_path, demo_copy), "--dataset", "d", "--out", out,
                     "--cube-size", "48", "--overlap", "0", "--workers", "1", "--no-progress"]}[command]
    before = snapshot(tmp_path)
    assert_refused(run_cli(*args), out, "is a file")
    assert_unchanged(before)
    assert_nothing_new(tmp_path, before)


def test_demo_data_rerun_replaces_only_its_own_files(tmp_path: Path) -> None:
    out = tmp_path / "d"
    assert run_cli("demo-data", "--out", out, "--size", "120").returncode == 0
    mine = user_files(out)
    first = snapshot(out / "labels.tif")
    result = run_cli("demo-data", "--out", out, "--size", "120", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert_unchanged(mine)
    assert snapshot(out / "labels.tif") != first  # the demo itself was replaced
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


def _catalog(root: Path, demo: Path, name: str = "catalog.yaml") -> Path:
    from geoseg.demo import DEMO_CLASSES

    path = root / name
    path.write_text(yaml.safe_dump({"schema_version": 1, "datasets": {"d": {
        "recipe": "s2_24", "ignore_codes": [0],
        "classes": [{"code": c, "name": n, "color": col} for c, n, col in DEMO_CLASSES],
        "scenes": [{"id": "demo", "path": str(scene_of(demo)), "labels": {"raster": str(demo / "labels.tif")}}],
    }}}))
    return path


def _tile(catalog: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("tile", "--catalog", catalog, "--dataset", "d", "--out", out, "--cube-size", "48",
                   "--overlap", "0", "--split-block", "1", "--min-valid", "0.1", "--workers", "1", "--no-progress",
                   *extra)


def test_tile_refuses_a_folder_of_user_files(tmp_path: Path, demo_copy: Path) -> None:
    out = tmp_path / "cubes"
    out.mkdir()
    user_files(out)
    before = snapshot(out)
    inputs = snapshot(demo_copy)
    assert_refused(_tile(_catalog(tmp_path, demo_copy), out), out, "not written by geoseg")
    assert_refused(_tile(_catalog(tmp_path, demo_copy), out, "--overwrite"), out, "not written by geoseg")
    assert_unchanged(before)
    assert_unchanged(inputs)
    assert_nothing_new(out, before)


def test_tile_overwrite_keeps_a_user_file_in_the_store(tmp_path: Path, demo_copy: Path) -> None:
    catalog, out = _catalog(tmp_path, demo_copy), tmp_path / "cubes"
    assert _tile(catalog, out).returncode == 0
    mine = user_files(out, ("my_notes.txt",))
    assert_refused(_tile(catalog, out, "--min-valid", "0.3"), out, "--overwrite")  # built differently
    assert_unchanged(mine)
    result = _tile(catalog, out, "--min-valid", "0.3", "--overwrite")
    assert result.returncode == 0, result.stderr
    assert_unchanged(mine)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["min_valid"] == 0.3


def test_tile_output_inside_the_scene_folder(tmp_path: Path, demo_copy: Path) -> None:
    out = scene_of(demo_copy) / "cubes"
    before = snapshot(demo_copy)
    assert_refused(_tile(_catalog(tmp_path, demo_copy), out), out, "inside the input")
    assert_unchanged(before)
    assert_nothing_new(demo_copy, before)


def test_evaluate_refuses_a_folder_of_user_files(tmp_path: Path, bundle: Path, store: Path) -> None:
    out = tmp_path / "e"
    out.mkdir()
    user_files(out)
    before = snapshot(out)
    inputs = snapshot(bundle, store)
    assert_refused(run_inproc("evaluate", bundle, store, "--out", out, "--device", "cpu"), out, "not written by geoseg")
    assert_unchanged(before)
    assert_unchanged(inputs)
    assert_nothing_new(out, before)


def test_evaluate_rerun_keeps_a_user_file(tmp_path: Path, bundle: Path, store: Path) -> None:
    out = tmp_path / "e"
    assert run_inproc("evaluate", bundle, store, "--out", out, "--device", "cpu").returncode == 0
    mine = user_files(out, ("my_notes.txt",))
    result = run_inproc("evaluate", bundle, store, "--out", out, "--device", "cpu", "--split", "val")
    assert result.returncode == 0, result.stderr
    assert_unchanged(mine)
    assert json.loads((out / "metrics.json").read_text())["split"] == "val"


@pytest.mark.parametrize("where", ["bundle", "store"])
def test_evaluate_output_inside_an_input(where: str, tmp_path: Path, bundle: Path, store: Path) -> None:
    b, s = tmp_path / "best", tmp_path / "store"
    shutil.copytree(bundle, b)
    shutil.copytree(store, s)
    out = (b if where == "bundle" else s) / "eval"
    before = snapshot(b, s)
    assert_refused(run_inproc("evaluate", b, s, "--out", out, "--device", "cpu"), "inside the input")
    assert_unchanged(before)
    assert not out.exists()


def test_train_refuses_a_folder_of_user_files_and_overwrite_keeps_them(tmp_path: Path, store: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    user_files(out)
    before = snapshot(out)
    assert_refused(run_inproc("train", store, "--out", out, *TINY_TRAIN, "--overwrite"), out, "not written by geoseg")
    assert_unchanged(before)
    assert_nothing_new(out, before)
    # a geoseg training run with a user's file inside: --overwrite replaces the run, keeps the file
    run = tmp_path / "run"
    assert run_inproc("train", store, "--out", run, *TINY_TRAIN).returncode == 0
    mine = user_files(run, ("my_notes.txt",))
    assert_refused(run_inproc("train", store, "--out", run, *TINY_TRAIN), run, "--overwrite")
    result = run_inproc("train", store, "--out", run, *TINY_TRAIN, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert_unchanged(mine)
    assert (run / "best" / "model.safetensors").is_file() or (run / "final" / "model.safetensors").is_file()


def test_train_output_inside_the_store(tmp_path: Path, store: Path) -> None:
    s = tmp_path / "store"
    shutil.copytree(store, s)
    before = snapshot(s)
    assert_refused(run_inproc("train", s, "--out", s / "model", *TINY_TRAIN), "inside the input")
    assert_unchanged(before)
    assert_nothing_new(s, before)


# ------------------------------------------------------------------------------------ files
def test_features_never_overwrites_its_scene(tmp_path: Path, multiband: Path) -> None:
    scene = tmp_path / "s.tif"
    shutil.copy(multiband, scene)
    before = snapshot(tmp_path)
    assert_refused(run_cli("features", scene, "--out", scene), scene, "input")
    link = tmp_path / "link.tif"
    link.symlink_to(scene)
    assert_refused(run_cli("features", scene, "--out", link), "input")
    link.unlink()
    assert_unchanged(before)
    assert_nothing_new(tmp_path, before)


def test_features_never_overwrites_a_band_file(demo_copy: Path) -> None:
    scene = scene_of(demo_copy)
    target = band_of(scene, "B04")
    before = snapshot(demo_copy)
    assert_refused(run_cli("features", scene, "--out", target), target, "input")
    assert_refused(run_cli("features", scene, "--out", scene / "stack.tif"), "inside the input")
    assert_unchanged(before)
    assert_nothing_new(demo_copy, before)


def test_features_existing_outputs(tmp_path: Path, demo_copy: Path) -> None:
    scene = scene_of(demo_copy)
    mine = tmp_path / "mine.tif"
    shutil.copy(demo_copy / "labels.tif", mine)  # a real GeoTIFF, but not one geoseg wrote
    folder = tmp_path / "folder"
    folder.mkdir()
    before = snapshot(tmp_path)
    assert_refused(run_cli("features", scene, "--out", mine), mine, "not written by geoseg")
    assert_refused(run_cli("features", scene, "--out", folder), folder, "folder")
    assert_unchanged(before)
    assert_nothing_new(tmp_path, before)
    ours = tmp_path / "stack.tif"
    for _ in range(2):  # a file geoseg wrote is replaced by the rerun
        result = run_cli("features", scene, "--out", ours, "--no-progress")
        assert result.returncode == 0, result.stderr
    assert_unchanged(before)


def test_features_in_a_read_only_folder(tmp_path: Path, demo_copy: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    before = snapshot(demo_copy)
    with read_only(locked):
        assert_refused(run_cli("features", scene_of(demo_copy), "--out", locked / "stack.tif"), "cannot write")
        assert not any(locked.iterdir())
    assert_unchanged(before)


def test_predict_outputs(tmp_path: Path, demo_copy: Path, bundle: Path) -> None:
    scene = scene_of(demo_copy)
    b = tmp_path / "best"
    shutil.copytree(bundle, b)
    mine_gpkg = tmp_path / "mine.gpkg"
    mine_gpkg.write_bytes(b"SQLite format 3\x00 not really")
    (tmp_path / "map.qml").write_text("<qgis>my own style</qgis>")
    before = snapshot(tmp_path)
    cases = [
        (["--out", band_of(scene, "B03")], "input"),
        (["--out", scene / "map.tif"], "inside the input"),
        (["--out", b / "map.tif"], "inside the input"),
        (["--out", demo_copy / "labels.tif"], "not written by geoseg"),
        (["--out", tmp_path / "ok.tif", "--vector", mine_gpkg], "not written by geoseg"),
        (["--out", tmp_path / "map.tif"], "map.qml"),  # the sidecar would overwrite the user's style
    ]
    for args, why in cases:
        assert_refused(run_cli("predict", "--model", b, "--scene", scene, "--device", "cpu", "--no-progress",
                               *args), why)
    assert_unchanged(before)
    assert_nothing_new(tmp_path, before)


def test_export_and_cubes_export_outputs(tmp_path: Path, bundle: Path, store: Path) -> None:
    b, s = tmp_path / "best", tmp_path / "store"
    shutil.copytree(bundle, b)
    shutil.copytree(store, s)
    mine = tmp_path / "mine.npy"
    mine.write_bytes(b"\x93NUMPY my own array")
    onnx_mine = tmp_path / "model.onnx"
    onnx_mine.write_bytes(b"not geoseg's model")
    before = snapshot(tmp_path)
    assert_refused(run_inproc("export", b, "--out", b / "model.onnx", "--no-check"), "inside the input")
    assert_refused(run_inproc("export", b, "--out", onnx_mine, "--no-check"), onnx_mine, "not written by geoseg")
    assert_refused(run_cli("cubes", "export", s, "--out", s / "cubes.npy"), "inside the input")
    assert_refused(run_cli("cubes", "export", s, "--out", mine), mine, "not written by geoseg")
    assert_unchanged(before)
    assert_nothing_new(tmp_path, before)


# ------------------------------------------------------------------------------------ pipelines
def _tiny_pipeline(tmp_path: Path) -> Path:
    from tests.pipeline._pipeline_helpers import tiny_pipeline, write_catalog, write_pipeline

    catalog = write_catalog(tmp_path / "catalog.yaml")
    data = tiny_pipeline(catalog, steps=("tile", "train", "predict"),
                         train={"epochs": 1}, predict={"window": 128, "confidence": False})
    return write_pipeline(tmp_path / "tiny.yaml", data)


def test_run_refuses_a_run_dir_of_user_files(tmp_path: Path) -> None:
    run = tmp_path / "r"
    (run / "predict" / "maps").mkdir(parents=True)
    (run / "predict" / "maps" / "my_map.tif").write_text("mine")
    before = snapshot(run)
    pipeline = _tiny_pipeline(tmp_path)
    assert_refused(run_inproc("run", pipeline, "--run-dir", run), run, "not written by geoseg")
    assert_unchanged(before)
    assert_nothing_new(run, before)


def test_run_force_predict_keeps_a_user_map(tmp_path: Path) -> None:
    run, pipeline = tmp_path / "r", _tiny_pipeline(tmp_path)
    result = run_inproc("run", pipeline, "--run-dir", run)
    assert result.returncode == 0, result.stderr
    maps = run / "predict" / "maps"
    mine = user_files(maps, ("my_map.tif",))
    result = run_inproc("run", pipeline, "--run-dir", run, "--force", "predict")
    assert result.returncode == 0, result.stderr
    assert_unchanged(mine)
    assert (maps / "demo.tif").is_file()


# ------------------------------------------------------------------------------------ leftovers
@pytest.mark.slow  # predict processes killed and rerun (~13 s): .ci/run runs the slow tier after the default suite
def test_killed_predict_leaves_no_lasting_temporaries(tmp_path: Path, bundle: Path) -> None:
    """kill -9 mid-prediction leaves hidden temporaries; the next run of the same output removes them."""
    from tests.predict._predict_helpers import write_multiband_scene

    scene = write_multiband_scene(tmp_path / "big.tif", 1024, 1024)
    out = tmp_path / "maps" / "map.tif"
    args = [sys.executable, "-m", "geoseg", "predict", "--model", str(bundle), "--scene", str(scene),
            "--out", str(out), "--device", "cpu", "--window", "64", "--batch-size", "4", "--workers", "1"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.name.startswith(".map.stream-") for p in out.parent.glob(".*")):
                break
            time.sleep(0.05)
        time.sleep(0.2)
        if proc.poll() is not None:
            pytest.skip("prediction finished before it could be killed")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    leftovers = [p for p in out.parent.iterdir() if p.name.startswith(".map.")]
    assert leftovers, "the killed run left no temporary (nothing to test)"
    assert not out.exists()
    live = out.parent / f".map.stream-{os.getpid()}-0123abcd.tif"  # a live writer's temporary stays
    other = out.parent / ".other.stream-999999999-0123abcd.tif"  # another output's temporary stays
    for path in (live, other):
        path.write_bytes(b"")
    result = run_cli("predict", "--model", bundle, "--scene", scene, "--out", out, "--device", "cpu",
                     "--window", "512", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert not any(p.exists() for p in leftovers)
    assert live.exists() and other.exists()
    assert out.is_file()


def test_a_user_folder_with_demo_like_names_is_not_taken_for_an_old_demo(tmp_path: Path) -> None:
    """Folders from before markers are recognised by geoseg's own wording, never by file names alone."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.txt").write_text("My field campaign, 2024\n")
    (mine / "labels.tif").write_bytes(b"my labels")
    (mine / "T33UUU_20230612T101559").mkdir()
    before = snapshot(mine)
    assert_refused(run_cli("demo-data", "--out", mine, "--size", "120"), mine, "not written by geoseg")
    assert_unchanged(before)
    # an unmarked demo folder written by an earlier geoseg is still replaced, a user's file kept
    old = tmp_path / "old"
    assert run_cli("demo-data", "--out", old, "--size", "120").returncode == 0
    (old / ".geoseg.json").unlink()
    kept = user_files(old, ("notes.txt",))
    result = run_cli("demo-data", "--out", old, "--size", "120", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert_unchanged(kept)
