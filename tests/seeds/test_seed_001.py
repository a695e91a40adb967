"""Seed 001 (UNet3+ with a pretrained backbone): its train, evaluate and inference commands, as written.

The seed's command lines run through ``geoseg`` (``python src/unet3plus/train_unet3plus.py`` →
``geoseg train``, ``eval_unet3plus.py`` → ``geoseg evaluate``, ``inference_unet3plus.py`` →
``geoseg predict``) with their own flags; only the sizes are tiny (64 px chips cut from the real
TerraMind samples of ../shared/data, a timm test encoder, two epochs) and ``--pretrained`` (the
timm hub, offline here) is the seed's ``--no_pretrained``. docs/seeds.md maps every name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from click.testing import CliRunner
from rasterio.windows import Window

from tests.conftest import REPO, shared
from tests.reliability.conftest import assert_refused, assert_unchanged, run_inproc, snapshot

SAMPLES = ("282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3")
CORNERS = ((0, 0), (96, 96))  # two 64 px chips per 224 px sample
TINY = ["--backbone", "test_resnet", "--cat_channels", "8"]  # the seed's convnext_tiny, 64 channels: too big here



def _cut(tif: Path, window: Window) -> tuple[np.ndarray, dict]:
    with rasterio.open(tif) as ds:
        profile = {"driver": "GTiff", "width": window.width, "height": window.height, "count": ds.count,
                   "dtype": ds.dtypes[0], "crs": ds.crs, "transform": ds.window_transform(window)}
        return ds.read(window=window), profile


def make_chips(root: Path) -> dict[str, list[str]]:
    """The seed's data form from the real samples: images/ (GeoTIFF and .npy chips of the 12 L2A
    bands), masks/ (LULC codes), train.csv (a ``filename`` column) and val.csv (``image,mask``)."""
    data = shared("terramind_examples")
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    names = []
    for k, sample in enumerate(SAMPLES):
        for j, (row, col) in enumerate(CORNERS):
            window = Window(col, row, 64, 64)
            bands, profile = _cut(data / "S2L2A" / f"{sample}.tif", window)
            labels, label_profile = _cut(data / "LULC" / f"{sample}.tif", window)
            name = f"{sample}_{j}"
            if k % 2 == 0:  # georeferenced GeoTIFF chips
                with rasterio.open(root / "images" / f"{name}.tif", "w", **profile) as out:
                    out.write(bands)
                with rasterio.open(root / "masks" / f"{name}.tif", "w", **label_profile) as out:
                    out.write(labels)
            else:  # numpy chips, no georeferencing
                np.save(root / "images" / f"{name}.npy", bands)
                np.save(root / "masks" / f"{name}.npy", labels[0])
            names.append(name)
    train, val = names[:7], names[7:]
    (root / "train.csv").write_text("filename\n" + "".join(f"{n}\n" for n in train))
    masks = {n: next((root / "masks").glob(f"{n}.*")).name for n in val}
    (root / "val.csv").write_text("image,mask\n" + "".join(f"{n},{masks[n]}\n" for n in val))
    return {"train": train, "val": val}


@pytest.fixture(scope="module")
def seed_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seed001") / "spark2024"
    make_chips(root)
    return root


@pytest.fixture(scope="module")
def trained(seed_data: Path) -> Path:
    """``python src/unet3plus/train_unet3plus.py --backbone convnext_tiny --pretrained --epochs 30 --batch_size 8
    --target_size 512 --save_path model_weights_unet3plus`` (+ the seed's --data_root and debug subset)."""
    save_path = seed_data.parent / "model_weights_unet3plus"
    result = run_inproc("train", "--preset", "seed001", *TINY, "--no_pretrained", "--epochs", "2", "--batch_size", "4",
                        "--target_size", "32", "--save_path", save_path, "--data_root", seed_data,
                        "--num_workers", "0", "--patience", "15", "--validate_every", "2", "--downsample",
                        "--downsample_size", "4", "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trained unet3plus (test_resnet) for 2 epochs" in result.stdout
    return save_path


# ------------------------------------------------------------------------------ the seed's flags
def _capture(monkeypatch, target: str) -> dict:
    seen: dict = {}

    def fake(*args, **kwargs):
        seen["args"], seen["kwargs"] = args, kwargs
        raise SystemExit(0)

    monkeypatch.setattr(target, fake)
    return seen


def test_training_flags_are_geosegs_options(monkeypatch, tmp_path):
    seen = _capture(monkeypatch, "geoseg.train.train")
    args = ["train", "--backbone", "convnext_tiny", "--no_pretrained", "--freeze_backbone", "--deep_supervision",
            "--cat_channels", "64", "--epochs", "30", "--batch_size", "8", "--target_size", "512",
            "--num_workers", "7", "--patience", "15", "--validate_every", "2", "--save_path", str(tmp_path / "m"),
            "--data_root", str(tmp_path / "data"), "--downsample", "--downsample_size", "100",
            "--model", "unet3plus"]
    assert CliRunner().invoke(_main_group(), args).exit_code == 0
    cfg = seen["args"][0]
    assert (cfg.encoder, cfg.pretrained, cfg.freeze_backbone, cfg.deep_supervision, cfg.cat_channels) == (
        "convnext_tiny", False, True, True, 64)
    assert (cfg.epochs, cfg.batch_size, cfg.target_size, cfg.num_workers, cfg.patience, cfg.validate_every) == (
        30, 8, 512, 7, 15, 2)
    assert (cfg.out, cfg.data_root, cfg.downsample, cfg.downsample_size) == (
        tmp_path / "m", tmp_path / "data", True, 100)
    CliRunner().invoke(_main_group(), ["train", "--data_root", "d", "--save_path", "m", "--pretrained"])
    assert seen["args"][0].pretrained is True
    for extra, mode in (([], "resize"), (["--target-mode", "crop"], "crop")):  # the preset's resize, unless given
        CliRunner().invoke(_main_group(), ["train", "--preset", "seed001", "--data_root", "d", "--save_path", "m",
                                           "--target_size", "32", *extra])
        assert (seen["args"][0].target_size, seen["args"][0].target_mode) == (32, mode)


def test_evaluation_and_inference_flags_are_geosegs_options(monkeypatch, tmp_path):
    seen = _capture(monkeypatch, "geoseg.train.evaluate")
    args = ["evaluate", "--model_path", "model_weights_unet3plus/unet3plus_best", "--val_csv", "s/val.csv",
            "--image_root", "s/images", "--mask_root", "s/mask", "--target_size", "512", "--batch_size", "32",
            "--output_path", "evaluation_results_unet3plus", "--save_examples", "--fp16", "--compile"]
    assert CliRunner().invoke(_main_group(), args).exit_code == 0
    model, chips, out, opts = seen["args"]
    assert model == Path("model_weights_unet3plus/unet3plus_best") and out == Path("evaluation_results_unet3plus")
    assert (chips.csv, chips.images, chips.masks) == (Path("s/val.csv"), Path("s/images"), Path("s/mask"))
    assert (opts.target_size, opts.batch_size, opts.save_examples, opts.fp16, opts.compile) == (512, 32, 4, True, True)

    seen = _capture(monkeypatch, "geoseg.predict.chips.predict_chips")
    args = ["predict", "--model_path", "m/best", "--data_path", "test", "--output_dir", "submission_output_unet3plus",
            "--batch_size", "32", "--target_size", "512", "--num_workers", "8", "--no_fp16", "--save_visualizations"]
    assert CliRunner().invoke(_main_group(), args).exit_code == 0
    (data, model, out, opts), kwargs = seen["args"], seen["kwargs"]
    assert (data, model, out) == (Path("test"), Path("m/best"), Path("submission_output_unet3plus"))
    assert (opts.batch_size, opts.window, opts.workers, opts.fp16, kwargs["save_visualizations"]) == (
        32, 512, 8, False, True)


def _main_group():
    from geoseg.cli.main import cli

    return cli


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_seed_spellings_stay_out_of_help(command):
    text = CliRunner().invoke(_main_group(), [command, "--help"]).output
    assert "--save-path" not in text and not [w for w in text.split() if w.startswith("--") and "_" in w], text


def test_deepspeed_flag_is_the_zero2_strategy_or_one_error_line(monkeypatch, tmp_path):
    import importlib.util

    if importlib.util.find_spec("deepspeed") is not None:
        seen = _capture(monkeypatch, "geoseg.train.train")
        CliRunner().invoke(_main_group(), ["train", "--data_root", "d", "--save_path", "m", "--deepspeed"])
        assert seen["args"][0].strategy == "deepspeed_stage_2"
        return
    result = run_inproc("train", "--backbone", "convnext_tiny", "--pretrained", "--epochs", "30", "--batch_size", "8",
                        "--deepspeed", "--data_root", tmp_path / "data", "--save_path", tmp_path / "m")
    line = assert_refused(result, "--deepspeed")
    assert "pip install deepspeed" in line and not (tmp_path / "m").exists()


def test_preset_seed001_sits_under_yaml_and_cli(tmp_path):
    from geoseg.train import TrainConfig
    from geoseg.train.config import PRESETS, load_train_config

    cfg = TrainConfig(preset="seed001")
    assert (cfg.model, cfg.encoder, cfg.epochs, cfg.batch_size, cfg.validate_every, cfg.monitor, cfg.patience,
            cfg.save_every) == ("unet3plus", "convnext_tiny", 30, 8, 2, "val_loss", 15, 10)
    assert cfg.pretrained is False  # offline: the hub weights stay opt-in (--pretrained)
    assert cfg.target_mode == "resize"  # the seed's --target_size resizes
    assert TrainConfig(preset="seed001", target_mode="crop").target_mode == "crop"  # unless asked otherwise
    yml = tmp_path / "train.yaml"
    yml.write_text(yaml.safe_dump({"preset": "seed001", "epochs": 5, "monitor": "val_miou"}))
    cfg = load_train_config(yml, batch_size=2)
    assert (cfg.epochs, cfg.monitor, cfg.batch_size, cfg.validate_every) == (5, "val_miou", 2, 2)
    assert load_train_config(None, preset="seed001", model="unet").model == "unet"
    plain = TrainConfig()  # geoseg's own defaults are unchanged
    assert (plain.model, plain.validate_every, plain.monitor, plain.save_every, plain.target_mode) == (
        "unet", 1, "val_miou", None, "crop")
    assert set(PRESETS["seed001"]) <= set(TrainConfig.model_fields)


# ------------------------------------------------------------------------------ the data form
def test_chips_are_the_tilers_features(seed_data, tmp_path):
    """A GeoTIFF chip is read as a scene by the tiler's code; its bands as an array (no georeferencing)
    give the same channels; the recipe's 24 channels are taken as they are."""
    from geoseg.features import read_features
    from geoseg.features.chips import read_chip
    from geoseg.io import open_scene

    tif = seed_data / "images" / f"{SAMPLES[0]}_0.tif"
    scene = open_scene(tif)
    expected, valid = read_features(scene, Window(0, 0, 64, 64))
    chip = read_chip(tif)
    assert chip.kind == "bands" and chip.grid is not None and chip.grid.shape == (64, 64)
    np.testing.assert_array_equal(chip.features, expected)
    with rasterio.open(tif) as ds:
        np.save(tmp_path / "bands.npy", np.moveaxis(ds.read(), 0, -1))  # (H, W, C) works too
    as_array = read_chip(tmp_path / "bands.npy")
    assert as_array.grid is None and as_array.offset == scene.offset.offset
    np.testing.assert_array_equal(as_array.features, expected)
    np.save(tmp_path / "features.npy", expected)
    features = read_chip(tmp_path / "features.npy")
    assert features.kind == "features"
    np.testing.assert_array_equal(features.features, expected)
    np.testing.assert_array_equal(features.valid, valid)


def test_labels_outside_the_class_map_are_one_line_naming_the_file(seed_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(seed_data, root)
    (root / "dataset.yaml").write_text(yaml.safe_dump({"classes": [
        {"code": 1, "name": "water", "color": "#419bdf"}, {"code": 2, "name": "trees", "color": "#397d49"}]}))
    before = snapshot(root)
    result = run_inproc("train", "--data_root", root, "--save_path", tmp_path / "m", *TINY, "--model", "unet3plus")
    line = assert_refused(result, "masks", "not in the class map")
    assert any(f"masks/{n}" in line for n in os.listdir(root / "masks"))
    assert not (tmp_path / "m").exists()
    assert_unchanged(before, root)


# ------------------------------------------------------------------------------ the seed's commands
def test_training_writes_a_bundle_that_predicts_scenes(trained, seed_data, tmp_path):
    config = yaml.safe_load((trained / "config.yaml").read_text())
    assert (config["model"], config["monitor"], config["validate_every"], config["data_root"]) == (
        "unet3plus", "val_loss", 2, str(seed_data))
    history = json.loads((trained / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and "val_loss" in history[1]
    assert (trained / "training_plots.png").is_file() and (trained / "final" / "model.safetensors").is_file()
    bundle = json.loads((trained / "best" / "config.json").read_text())
    assert bundle["recipe"]["name"] == "s2_24" and len(bundle["channel_names"]) == 24
    assert [c["code"] for c in bundle["classes"]] == [1, 2, 4, 5, 6, 7, 9]  # the codes of the masks
    assert len(bundle["normalization"]["mean"]) == 24
    # geoseg predict on a whole scene with the chip-trained model (recipe and normalisation recorded)
    scene = shared("terramind_examples", "S2L2A", f"{SAMPLES[2]}.tif")
    result = run_inproc("predict", "--model", trained / "best", "--scene", scene, "--out", tmp_path / "lc.tif",
                        "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr
    with rasterio.open(tmp_path / "lc.tif") as ds:
        assert ds.shape == (224, 224) and set(np.unique(ds.read(1))) <= {1, 2, 4, 5, 6, 7, 9}


def test_evaluation_command(trained, seed_data, tmp_path):
    """``python src/unet3plus/eval_unet3plus.py --model_path ... --val_csv .../val.csv --image_root .../images
    --mask_root .../mask --target_size 512 --batch_size 32 --output_path evaluation_results_unet3plus
    --save_examples --fp16``."""
    out = tmp_path / "evaluation_results_unet3plus"
    result = run_inproc("evaluate", "--model_path", trained / "best", "--val_csv", seed_data / "val.csv",
                        "--image_root", seed_data / "images", "--mask_root", seed_data / "masks",
                        "--target_size", "64", "--batch_size", "32", "--output_path", out, "--save_examples", "--fp16")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "val.csv: 3 chips" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_cubes"] == 3 and metrics["cubes"] == str((seed_data / "val.csv").resolve())
    assert (out / "confusion_matrix.png").is_file() and (out / "evaluation_report.txt").is_file()
    assert sorted(p.name for p in (out / "examples").iterdir()) == ["example_0.png", "example_1.png", "example_2.png"]

    # a mask code outside the model's class map (3, flooded vegetation, was not in the training masks)
    masks = tmp_path / "mask"
    shutil.copytree(seed_data / "masks", masks)
    bad = masks / f"{SAMPLES[4]}_0.tif"
    with rasterio.open(bad, "r+") as ds:
        ds.write(np.full((1, 64, 64), 3, np.uint8))
    refused = run_inproc("evaluate", "--model_path", trained / "best", "--val_csv", seed_data / "val.csv",
                         "--image_root", seed_data / "images", "--mask_root", masks, "--output_path", tmp_path / "e2")
    assert "[3]" in assert_refused(refused, bad, "not in the class map")
    assert not (tmp_path / "e2").exists()


def test_inference_command(trained, seed_data, tmp_path):
    """``python src/unet3plus/inference_unet3plus.py --model_path ... --data_path .../stream-1-test
    --output_dir submission_output_unet3plus --batch_size 32 --target_size 512 --fp16`` (+ --save_visualizations)."""
    test = tmp_path / "stream-1-test"
    test.mkdir()
    for name in (f"{SAMPLES[0]}_1.tif", f"{SAMPLES[1]}_0.npy", f"{SAMPLES[4]}_1.tif"):
        shutil.copy(seed_data / "images" / name, test / name)
    out = tmp_path / "submission_output_unet3plus"
    before = snapshot(test)
    result = run_inproc("predict", "--model_path", trained / "best", "--data_path", test, "--output_dir", out,
                        "--batch_size", "32", "--target_size", "32", "--fp16", "--save_visualizations", "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "predicted 3 chips (2 georeferenced)" in result.stdout
    assert_unchanged(before, test)
    written = sorted(p.name for p in out.iterdir())
    for name in (f"{SAMPLES[0]}_1", f"{SAMPLES[1]}_0", f"{SAMPLES[4]}_1"):
        assert f"{name}_layer.npz" in written and f"{name}_vis.png" in written
        mask = np.load(out / f"{name}_layer.npz")["mask"]
        assert mask.shape == (64, 64) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1, 2, 4, 5, 6, 7, 9}
    # georeferenced chips: the land-cover GeoTIFF of geoseg predict, equal to the .npz mask
    assert f"{SAMPLES[1]}_0.tif" not in written
    with rasterio.open(out / f"{SAMPLES[0]}_1.tif") as ds:
        assert ds.tags()["GEOSEG_OUTPUT"] == "land cover" and ds.crs is not None
        np.testing.assert_array_equal(ds.read(1), np.load(out / f"{SAMPLES[0]}_1_layer.npz")["mask"])
    assert (out / f"{SAMPLES[0]}_1.qml").is_file()
    as_scene = run_inproc("predict", "--model", trained / "best", "--scene", test / f"{SAMPLES[0]}_1.tif",
                          "--window", "32", "--out", tmp_path / "as_scene.tif", "--no-progress")
    assert as_scene.returncode == 0, as_scene.stderr
    with rasterio.open(tmp_path / "as_scene.tif") as a, rasterio.open(out / f"{SAMPLES[0]}_1.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))  # a chip is predicted as the scene it is

    # a rerun replaces geoseg's files only: a user's own file in the folder stays
    (out / "notes.txt").write_text("mine")
    again = run_inproc("predict", "--model_path", trained / "best", "--data_path", test, "--output_dir", out,
                       "--no-progress")
    assert again.returncode == 0, again.stderr
    assert (out / "notes.txt").read_text() == "mine" and not (out / f"{SAMPLES[0]}_1_vis.png").exists()

    # a folder geoseg did not write is refused before any work
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "report.docx").write_text("x")
    kept = snapshot(theirs)
    refused = run_inproc("predict", "--model_path", trained / "best", "--data_path", test, "--output_dir", theirs)
    assert_refused(refused, str(theirs), "not written by geoseg")
    assert_unchanged(kept, theirs)
    assert sorted(os.listdir(theirs)) == ["report.docx"]


def _sbatch(name: str, *args: str | Path, tmp_path: Path) -> list[str]:
    """The command line ``pipelines/slurm/<name>`` hands to srun (a stand-in srun records it)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "srun").write_text('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\n'
                                 'printf "%s\\n" "$@" > "$SRUN_ARGS"\n')
    (bindir / "srun").chmod(0o755)
    args_file = tmp_path / "args.txt"
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "SRUN_ARGS": str(args_file),
           "SLURM_CPUS_PER_TASK": "3", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_NUM_NODES": "1"}
    run = subprocess.run(["bash", str(REPO / "pipelines" / "slurm" / name), *map(str, args)], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return args_file.read_text().splitlines()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_slurm_scripts_take_the_seeds_data(trained, seed_data, tmp_path):
    """The seed's ``sbatch scripts/unet3plus_{train,eval,inference}.sh``: train.sbatch takes a folder of
    chips, evaluate.sbatch a CSV of chips, and infer.sbatch (new) predicts a folder of chips; the geoseg
    command lines (recorded by a stand-in srun) run as they are, later options overriding the template's."""
    folder = REPO / "pipelines" / "slurm"
    assert {"train.sbatch", "evaluate.sbatch", "infer.sbatch"} <= set(os.listdir(folder))
    usage = subprocess.run(["bash", str(folder / "infer.sbatch")], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr
    command = _sbatch("train.sbatch", seed_data, tmp_path / "m", "--preset", "seed001", tmp_path=tmp_path)
    assert command[:2] == ["geoseg", "train"] and command[2:4] == ["--data-root", str(seed_data)]

    out = tmp_path / "eval"
    command = _sbatch("evaluate.sbatch", trained / "best", seed_data / "val.csv", out, "--device", "cpu",
                      "--num-workers", "0", tmp_path=tmp_path)
    result = run_inproc(*command[1:])
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((out / "metrics.json").read_text())["num_cubes"] == 3

    out = tmp_path / "predictions"
    command = _sbatch("infer.sbatch", trained / "best", seed_data / "images", out, "--device", "cpu",
                      "--batch-size", "16", tmp_path=tmp_path)
    assert command[:2] == ["geoseg", "predict"] and "--data-path" in command and "--workers" in command
    result = run_inproc(*command[1:])
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(list(out.glob("*_layer.npz"))) == 10
