"""``geoseg predict`` end to end, several scenes, catalog datasets, and bad input (one line, exit 2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import rasterio
import torch
import yaml

from geoseg.cli.main import main
from geoseg.io.grid import Grid
from geoseg.predict import predict_scene
from tests.predict._predict_helpers import (
    DEMO_CLASSES,
    pointwise_bundle,
    unet_bundle,
    write_multiband_scene,
)


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return unet_bundle(tmp_path_factory.mktemp("models") / "unet", DEMO_CLASSES, window=64)


@pytest.fixture(scope="module")
def two_scenes(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("scenes")
    return [
        write_multiband_scene(root / "north.tif", 96, 80, seed=5, epsg=32633),
        write_multiband_scene(root / "south.tif", 70, 90, seed=6, epsg=32719, origin=(300000.0, 6000000.0)),
    ]


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_cli_single_scene(model_dir, two_scenes, tmp_path, capsys):
    out = tmp_path / "landcover.tif"
    code, stdout, _ = run_cli(["predict", "--model", model_dir, "--scene", two_scenes[0], "--out", out,
                               "--overlap", "16", "--confidence", tmp_path / "conf.tif", "--tta", "--no-progress",
                               "--summary-json", tmp_path / "summary.json"], capsys)
    assert code == 0
    assert "wrote" in stdout and "class areas" in stdout and " ha " in stdout and "valid" in stdout
    assert _listing(tmp_path) == ["conf.qml", "conf.tif", "landcover.qml", "landcover.tif", "landcover.tif.aux.xml",
                                  "summary.json"]
    with rasterio.open(out) as ds, rasterio.open(two_scenes[0]) as src:
        assert Grid.from_dataset(ds) == Grid.from_dataset(src)
        assert ds.tags()["model"] == "unet/test_resnet"


def test_cli_training_run_dir_uses_best(model_dir, two_scenes, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(model_dir, run / "best")
    code, stdout, _ = run_cli(["predict", "-m", run, "-s", two_scenes[1], "-o", tmp_path / "lc.tif", "--no-progress"],
                              capsys)
    assert code == 0 and (tmp_path / "lc.tif").exists()


def test_cli_several_scenes_each_in_its_own_crs(model_dir, two_scenes, tmp_path, capsys):
    out = tmp_path / "predictions"
    code, stdout, _ = run_cli(["predict", "-m", model_dir, "-s", two_scenes[0], "-s", two_scenes[1], "-o", out,
                               "--confidence", "conf.tif", "--vector", "classes.gpkg", "--no-progress"], capsys)
    assert code == 0
    assert _listing(out) == sorted([
        "north.tif", "north.tif.aux.xml", "north.qml", "north_conf.tif", "north_conf.qml", "north_classes.gpkg",
        "south.tif", "south.tif.aux.xml", "south.qml", "south_conf.tif", "south_conf.qml", "south_classes.gpkg"])
    for name, src in (("north", two_scenes[0]), ("south", two_scenes[1])):
        with rasterio.open(out / f"{name}.tif") as ds, rasterio.open(src) as s:
            assert Grid.from_dataset(ds) == Grid.from_dataset(s)
    assert stdout.count("wrote") == 2


def test_cli_single_scene_into_a_folder(model_dir, two_scenes, tmp_path, capsys):
    code, _, _ = run_cli(["predict", "-m", model_dir, "-s", two_scenes[1], "-o", tmp_path / "maps", "--no-progress"],
                         capsys)
    assert code == 0
    assert _listing(tmp_path / "maps") == ["south.qml", "south.tif", "south.tif.aux.xml"]


def test_cli_catalog_dataset(model_dir, two_scenes, tmp_path, capsys):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"schema_version": 1, "datasets": {"pair": {
        "recipe": "s2_24",
        "classes": [{"code": c.code, "name": c.name, "color": c.color} for c in DEMO_CLASSES],
        "scenes": [{"id": "a", "path": str(two_scenes[0])}, {"id": "b", "path": str(two_scenes[1])}],
    }}}))
    code, _, _ = run_cli(["predict", "-m", model_dir, "--catalog", catalog, "--dataset", "pair", "-o",
                          tmp_path / "out", "--no-progress"], capsys)
    assert code == 0
    assert {"a.tif", "b.tif", "a.qml", "b.qml"} <= set(_listing(tmp_path / "out"))


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing written
def _assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


def test_missing_model_dir(two_scenes, tmp_path, capsys):
    code, _, err = run_cli(["predict", "-m", tmp_path / "nope", "-s", two_scenes[0], "-o", tmp_path / "o" / "lc.tif"],
                           capsys)
    _assert_one_line_error(code, err, "nope", "model directory does not exist")
    assert not (tmp_path / "o").exists()


def test_model_dir_without_bundle(two_scenes, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["predict", "-m", tmp_path / "empty", "-s", two_scenes[0], "-o", tmp_path / "lc.tif"],
                           capsys)
    _assert_one_line_error(code, err, "config.json")
    assert _listing(tmp_path) == ["empty"]


def test_scene_lacking_a_band(model_dir, tmp_path, capsys):
    scene = write_multiband_scene(tmp_path / "rgb.tif", 64, 64, bands=("B02", "B03", "B04"))
    out = tmp_path / "out" / "lc.tif"
    code, _, err = run_cli(["predict", "-m", model_dir, "-s", scene, "-o", out], capsys)
    _assert_one_line_error(code, err, "rgb.tif", "B01", "s2_24")
    assert not (tmp_path / "out").exists()


def _unwritable(tmp_path: Path) -> Path:
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK) and os.geteuid() == 0:
        # root ignores permission bits: /proc refuses new files even for root
        return Path("/proc/geoseg-predict-test")
    return folder


def test_output_folder_not_writable(model_dir, two_scenes, tmp_path, capsys):
    folder = _unwritable(tmp_path)
    code, _, err = run_cli(["predict", "-m", model_dir, "-s", two_scenes[0], "-o", folder / "lc.tif"], capsys)
    _assert_one_line_error(code, err, "not writable")
    if folder.is_relative_to(tmp_path):
        assert _listing(folder) == []


@pytest.mark.parametrize(("option", "value", "needle"), [
    ("--window", "0", "window"), ("--overlap", "64", "overlap"), ("--batch-size", "0", "--batch-size"),
    pytest.param("--device", "cuda", "CUDA", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has a GPU"))])
def test_bad_options(model_dir, two_scenes, tmp_path, capsys, option, value, needle):
    code, _, err = run_cli(["predict", "-m", model_dir, "-s", two_scenes[0], "-o", tmp_path / "lc.tif",
                            option, value, "--no-progress"], capsys)
    _assert_one_line_error(code, err, needle)
    assert _listing(tmp_path) == []


def test_bad_output_names(model_dir, two_scenes, tmp_path, capsys):
    code, _, err = run_cli(["predict", "-m", model_dir, "-s", two_scenes[0], "-o", tmp_path / "lc.png"], capsys)
    _assert_one_line_error(code, err, ".tif")
    code, _, err = run_cli(["predict", "-m", model_dir, "-s", two_scenes[0], "-o", two_scenes[0]], capsys)
    _assert_one_line_error(code, err, "overwrite the input")


class _Exploding(torch.nn.Module):
    """Fails on the third batch: the run dies half-way through the scene."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner, self.calls = inner, 0
        self.in_channels, self.num_classes = inner.in_channels, inner.num_classes

    def forward(self, x):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("GPU fell off the bus")
        return self.inner(x)


def test_failure_half_way_leaves_nothing(two_scenes, tmp_path):
    bundle = pointwise_bundle(window=32)
    bundle.model = _Exploding(bundle.model)
    out = tmp_path / "out" / "lc.tif"
    (tmp_path / "out").mkdir()
    with pytest.raises(RuntimeError, match="fell off"):
        predict_scene(two_scenes[0], bundle, out, overlap=0, batch_size=2, device="cpu", progress=False,
                      confidence=tmp_path / "out" / "conf.tif", vector=tmp_path / "out" / "v.gpkg")
    assert _listing(tmp_path / "out") == []  # no output, no sidecar, no temporary file
