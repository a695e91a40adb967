"""Seed 001 (UNet3+ with a pretrained backbone): its train, evaluate and inference commands, as written.

The seed's command lines are quoted below and checked against the seed's text (its ```bash
blocks, backslash continuations joined). They run through ``geoseg`` in a folder laid out as
the seed's machine (``spark2024/`` with ``images/``, ``mask/``, ``train.csv``, ``val.csv``;
64 px chips cut from the real TerraMind samples of ../shared/data, L2A and L1C) with these
substitutions only (:func:`as_geoseg`), all documented in docs/seeds.md:

* the script is the geoseg command: ``train_unet3plus.py`` → ``geoseg train --preset seed001``
  (the script's defaults), ``eval_unet3plus.py`` → ``geoseg evaluate``,
  ``inference_unet3plus.py`` → ``geoseg predict``; the ``deepspeed`` launcher likewise;
* the seed's machine: ``/project/scratch/p200981/`` is the test's working folder, and the
  training script's defaults of ``--data_root`` and ``--save_path`` (its parameter table) are
  given explicitly when the command leaves them out;
* offline: ``--pretrained`` (the timm hub) is the seed's own ``--no_pretrained``;
* tiny sizes: each ``--backbone`` is a small model of its family (``test_convnext``,
  ``hrnet_w18_small``, ``test_efficientnet``) with ``--cat_channels 8``; ``--epochs 30`` → 2,
  ``--batch_size 8`` → 4, ``--target_size 512`` → 32;
* geoseg's bundle names: ``unet3plus_best`` → ``best``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
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

SEED = REPO.parent / "shared" / "seeds" / "001_fe54f04d617f8182.txt"

# the seed's command lines that run its scripts, verbatim, in the seed's order
_TRAIN_PY = "python src/unet3plus/train_unet3plus.py"
TRAIN = (f"{_TRAIN_PY} --backbone convnext_tiny --pretrained --epochs 30 --batch_size 8 --target_size 512 "
         "--save_path model_weights_unet3plus")
DEEPSPEED = ("deepspeed src/unet3plus/train_unet3plus.py --backbone convnext_tiny --pretrained --epochs 30 "
             "--batch_size 8 --deepspeed")
EVALUATE = ("python src/unet3plus/eval_unet3plus.py --model_path model_weights_unet3plus/unet3plus_best "
            "--val_csv /project/scratch/p200981/spark2024/val.csv --image_root /project/scratch/p200981/spark2024/images "
            "--mask_root /project/scratch/p200981/spark2024/mask --target_size 512 --batch_size 32 "
            "--output_path evaluation_results_unet3plus --save_examples --fp16")
INFERENCE = ("python src/unet3plus/inference_unet3plus.py --model_path model_weights_unet3plus/unet3plus_best "
             "--data_path /project/scratch/p200981/spark2024_test/segmentation/stream-1-test "
             "--output_dir submission_output_unet3plus --batch_size 32 --target_size 512 --fp16")
BACKBONES = (  # "Training with Different Backbones"
    f"{_TRAIN_PY} --backbone convnext_tiny --pretrained",
    f"{_TRAIN_PY} --backbone hrnet_w32 --pretrained",
    f"{_TRAIN_PY} --backbone efficientnet_b0 --pretrained",
    f"{_TRAIN_PY} --backbone convnext_tiny --pretrained --freeze_backbone",
    f"{_TRAIN_PY} --backbone convnext_tiny --pretrained --deep_supervision",
)

# the substitutions of the module docstring
SCRIPTS = {"src/unet3plus/train_unet3plus.py": ("train", "--preset", "seed001"),
           "src/unet3plus/eval_unet3plus.py": ("evaluate",),
           "src/unet3plus/inference_unet3plus.py": ("predict",)}
MACHINE = "/project/scratch/p200981/"
# train_unet3plus.py's defaults (its parameter table), given when a command leaves them out
TRAIN_DEFAULTS = {"--data_root": "/project/scratch/p200981/spark2024", "--save_path": "model_weights_unet3plus"}
TINY_BACKBONES = {"convnext_tiny": "test_convnext", "hrnet_w32": "hrnet_w18_small", "efficientnet_b0": "test_efficientnet"}
TINY_VALUES = {"--epochs": {"30": "2"}, "--batch_size": {"8": "4"}, "--target_size": {"512": "32"}}

SAMPLES = ("282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3")
L1C_SAMPLE = SAMPLES[3]  # its chips are cut from the 13-band L1C product, the others from L2A
CORNERS = ((0, 0), (96, 96))  # two 64 px chips per 224 px sample


def seed_commands(text: str) -> list[str]:
    """The seed's command lines that run one of its scripts (```bash blocks, continuations joined)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if len(words) > 1 and words[0] in ("python", "deepspeed") and words[1] in SCRIPTS:
                commands.append(" ".join(words))
    return commands


def as_geoseg(command: str, *, hub: bool = False) -> list[str]:
    """The geoseg arguments of one of the seed's command lines (the module docstring's substitutions;
    ``hub``: ``--pretrained`` kept, for a test that fakes the timm hub)."""
    _launcher, script, *args = shlex.split(command)
    if script.endswith("train_unet3plus.py"):
        args += [word for flag, value in TRAIN_DEFAULTS.items() if flag not in args for word in (flag, value)]
    out = list(SCRIPTS[script])
    for i, word in enumerate(args):
        flag = args[i - 1] if i else ""
        if word == "--pretrained" and not hub:
            word = "--no_pretrained"
        elif flag == "--backbone":
            word = TINY_BACKBONES[word]
        elif flag in TINY_VALUES:
            word = TINY_VALUES[flag].get(word, word)
        word = word.removeprefix(MACHINE).replace("unet3plus_best", "best")
        out.append(word)
    return out + (["--cat_channels", "8"] if "--backbone" in args else [])


def run_in(folder: Path, args: list[str]):
    """``geoseg ARGS`` run from ``folder`` (the seed's relative paths)."""
    with contextlib.chdir(folder):
        return run_inproc(*args)


def test_the_commands_are_the_seeds() -> None:
    if not SEED.is_file():
        pytest.skip(f"{SEED} is not available")
    assert seed_commands(SEED.read_text()) == [TRAIN, DEEPSPEED, EVALUATE, INFERENCE, *BACKBONES]


def test_the_substitutions() -> None:
    assert as_geoseg(TRAIN) == [
        "train", "--preset", "seed001", "--backbone", "test_convnext", "--no_pretrained", "--epochs", "2",
        "--batch_size", "4", "--target_size", "32", "--save_path", "model_weights_unet3plus",
        "--data_root", "spark2024", "--cat_channels", "8"]
    assert as_geoseg(EVALUATE)[:5] == ["evaluate", "--model_path", "model_weights_unet3plus/best",
                                       "--val_csv", "spark2024/val.csv"]


def _cut(tif: Path, window: Window) -> tuple[np.ndarray, dict]:
    with rasterio.open(tif) as ds:
        profile = {"driver": "GTiff", "width": window.width, "height": window.height, "count": ds.count,
                   "dtype": ds.dtypes[0], "crs": ds.crs, "transform": ds.window_transform(window)}
        return ds.read(window=window), profile


def _write_chip(images: Path, masks: Path, name: str, sample: str, window: Window, as_array: bool,
                product: str | None = None) -> None:
    """One chip of ``sample``'s ``product`` (default: S2L1C for :data:`L1C_SAMPLE`, else S2L2A) and its LULC mask."""
    data = shared("terramind_examples")
    product = product or ("S2L1C" if sample == L1C_SAMPLE else "S2L2A")
    bands, profile = _cut(data / product / f"{sample}.tif", window)
    labels, label_profile = _cut(data / "LULC" / f"{sample}.tif", window)
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    if as_array:  # numpy chips, no georeferencing
        np.save(images / f"{name}.npy", bands)
        np.save(masks / f"{name}.npy", labels[0])
        return
    with rasterio.open(images / f"{name}.tif", "w", **profile) as out:
        out.write(bands)
    with rasterio.open(masks / f"{name}.tif", "w", **label_profile) as out:
        out.write(labels)


def make_chips(root: Path) -> dict[str, list[str]]:
    """The seed's data form from the real samples: images/ (GeoTIFF and .npy chips of the 12 L2A
    or the 13 L1C bands), mask/ (LULC codes; the seed's --mask_root names mask/), train.csv (a
    ``filename`` column) and val.csv (``image,mask``)."""
    names = []
    for k, sample in enumerate(SAMPLES):
        for j, (row, col) in enumerate(CORNERS):
            name = f"{sample}_{j}"
            as_array = k == 1 or (sample == L1C_SAMPLE and j == 1)
            _write_chip(root / "images", root / "mask", name, sample, Window(col, row, 64, 64), as_array)
            names.append(name)
    train, val = names[:7], names[7:]
    (root / "train.csv").write_text("filename\n" + "".join(f"{n}\n" for n in train))
    masks = {n: next((root / "mask").glob(f"{n}.*")).name for n in val}
    (root / "val.csv").write_text("image,mask\n" + "".join(f"{n},{masks[n]}\n" for n in val))
    return {"train": train, "val": val}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed's machine: ``spark2024/`` (the CSV form) in the working folder of the commands."""
    folder = tmp_path_factory.mktemp("seed001")
    make_chips(folder / "spark2024")
    return folder


@pytest.fixture(scope="module")
def seed_data(workdir: Path) -> Path:
    return workdir / "spark2024"


@pytest.fixture(scope="module")
def trained(workdir: Path) -> Path:
    """The seed's training command (``TRAIN``), run in the working folder."""
    result = run_in(workdir, as_geoseg(TRAIN))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trained unet3plus (test_convnext) for 2 epochs" in result.stdout
    return workdir / "model_weights_unet3plus"


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


def _deepspeed_installed(monkeypatch, installed: bool) -> None:
    """DeepSpeed importable or not, whatever this machine has (only ``find_spec`` is asked)."""
    import importlib.machinery
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name: str, *args, **kwargs):
        if name.split(".")[0] == "deepspeed":
            return importlib.machinery.ModuleSpec("deepspeed", None) if installed else None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_deepspeed_flag_is_the_zero2_strategy(workdir, tmp_path, monkeypatch):
    """The seed's ``deepspeed src/unet3plus/train_unet3plus.py ... --deepspeed``: with DeepSpeed
    importable, the Lightning Trainer receives ``strategy="deepspeed_stage_2"`` (the run stops there)."""
    import lightning.pytorch as pl

    _deepspeed_installed(monkeypatch, True)
    received: dict = {}

    class Trainer:
        def __init__(self, **kwargs) -> None:
            received.update(kwargs)
            raise SystemExit(0)  # what follows needs a real DeepSpeed

    monkeypatch.setattr(pl, "Trainer", Trainer)
    shutil.copytree(workdir / "spark2024", tmp_path / "spark2024")
    result = run_in(tmp_path, as_geoseg(DEEPSPEED))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert received["strategy"] == "deepspeed_stage_2"
    assert received["max_epochs"] == 2 and received["check_val_every_n_epoch"] == 2  # the rest of the command


def test_pretrained_offline_is_one_error_line_naming_the_weights_flag(workdir, tmp_path, monkeypatch):
    """The seed's ``--pretrained`` as written, on a machine without network (the timm hub fails)."""
    import timm

    real = timm.create_model

    def offline(name: str, *args, pretrained: bool = False, **kwargs):
        if pretrained:
            raise OSError("Temporary failure in name resolution")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    shutil.copytree(workdir / "spark2024", tmp_path / "spark2024")
    result = run_in(tmp_path, as_geoseg(TRAIN, hub=True))
    line = assert_refused(result, "test_convnext", "no network", "--weights FILE")
    assert "pretrained=<" not in line and not (tmp_path / "model_weights_unet3plus").exists()


def test_deepspeed_flag_without_deepspeed_is_one_error_line(tmp_path, monkeypatch):
    _deepspeed_installed(monkeypatch, False)
    result = run_in(tmp_path, as_geoseg(DEEPSPEED))
    line = assert_refused(result, "--deepspeed")
    assert "pip install deepspeed" in line and not (tmp_path / "model_weights_unet3plus").exists()


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
@pytest.mark.parametrize("sample", [SAMPLES[0], L1C_SAMPLE], ids=["L2A", "L1C"])
def test_chips_are_the_tilers_features(seed_data, sample, tmp_path):
    """A GeoTIFF chip (12 L2A or 13 L1C bands) is read as a scene by the tiler's code; its bands
    as an array (no georeferencing) give the same channels; the recipe's 24 channels are taken
    as they are."""
    from geoseg.features import read_features
    from geoseg.features.chips import read_chip
    from geoseg.io import open_scene

    tif = seed_data / "images" / f"{sample}_0.tif"
    scene = open_scene(tif)
    expected, valid = read_features(scene, Window(0, 0, 64, 64))
    chip = read_chip(tif)
    assert chip.kind == "bands" and chip.grid is not None and chip.grid.shape == (64, 64)
    assert chip.level == scene.level == ("L1C" if sample == L1C_SAMPLE else "L2A")
    np.testing.assert_array_equal(chip.features, expected)
    with rasterio.open(tif) as ds:
        assert ds.count == (13 if sample == L1C_SAMPLE else 12)
        np.save(tmp_path / "bands.npy", np.moveaxis(ds.read(), 0, -1))  # (H, W, C) works too
    as_array = read_chip(tmp_path / "bands.npy")
    assert as_array.grid is None and as_array.offset == scene.offset.offset and as_array.level == chip.level
    np.testing.assert_array_equal(as_array.features, expected)
    np.save(tmp_path / "features.npy", expected)
    features = read_chip(tmp_path / "features.npy")
    assert features.kind == "features"
    np.testing.assert_array_equal(features.features, expected)
    np.testing.assert_array_equal(features.valid, valid)


def test_labels_outside_the_class_map_are_one_line_naming_the_file(seed_data, tmp_path):
    root = tmp_path / "spark2024"
    shutil.copytree(seed_data, root)
    (root / "dataset.yaml").write_text(yaml.safe_dump({"classes": [
        {"code": 1, "name": "water", "color": "#419bdf"}, {"code": 2, "name": "trees", "color": "#397d49"}]}))
    before = snapshot(root)
    result = run_in(tmp_path, as_geoseg(TRAIN))
    line = assert_refused(result, "mask", "not in the class map")
    assert any(f"mask/{n}" in line for n in os.listdir(root / "mask"))
    assert not (tmp_path / "model_weights_unet3plus").exists()
    assert_unchanged(before, root)


def test_the_folder_form_of_l1c_chips(tmp_path):
    """The seed's training command on ``images/train|val`` + ``mask/train|val`` (no CSV) of 13-band
    L1C GeoTIFF chips."""
    root = tmp_path / "spark2024"
    for split, samples in (("train", SAMPLES[:3]), ("val", SAMPLES[3:])):
        for sample in samples:
            _write_chip(root / "images" / split, root / "mask" / split, sample, sample, Window(0, 0, 64, 64),
                        as_array=False, product="S2L1C")
    from geoseg.data.chips import ChipStore

    store = ChipStore.open_root(root)
    assert [(c.split, c.image.parent.name, c.mask.parent.parent.name) for c in store.chips] == (
        [("train", "train", "mask")] * 3 + [("val", "val", "mask")] * 2)
    assert {s["level"] for s in store.manifest["sources"]} == {"L1C"}

    result = run_in(tmp_path, as_geoseg(TRAIN))
    assert result.returncode == 0, result.stdout + result.stderr
    bundle = json.loads((tmp_path / "model_weights_unet3plus" / "best" / "config.json").read_text())
    assert bundle["domain"]["levels"] == ["L1C"] and len(bundle["channel_names"]) == 24
    history = json.loads((tmp_path / "model_weights_unet3plus" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and "val_loss" in history[1]


# ------------------------------------------------------------------------------ the seed's commands
def test_training_writes_a_bundle_that_predicts_scenes(trained, seed_data, tmp_path):
    config = yaml.safe_load((trained / "config.yaml").read_text())
    assert (config["model"], config["encoder"], config["monitor"], config["validate_every"]) == (
        "unet3plus", "test_convnext", "val_loss", 2)
    assert (config["target_size"], config["target_mode"], config["pretrained"]) == (32, "resize", False)
    assert Path(config["data_root"]) == Path("spark2024")  # the seed's default, relative to where it ran
    history = json.loads((trained / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and "val_loss" in history[1]
    assert (trained / "training_plots.png").is_file() and (trained / "final" / "model.safetensors").is_file()
    bundle = json.loads((trained / "best" / "config.json").read_text())
    assert bundle["recipe"]["name"] == "s2_24" and len(bundle["channel_names"]) == 24
    assert [c["code"] for c in bundle["classes"]] == [1, 2, 4, 5, 6, 7, 9]  # the codes of the masks
    assert len(bundle["normalization"]["mean"]) == 24
    assert bundle["domain"]["levels"] == ["L1C", "L2A"]  # one L1C chip among the training chips
    # geoseg predict on a whole scene with the chip-trained model (recipe and normalisation recorded)
    scene = shared("terramind_examples", "S2L2A", f"{SAMPLES[2]}.tif")
    result = run_inproc("predict", "--model", trained / "best", "--scene", scene, "--out", tmp_path / "lc.tif",
                        "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr
    with rasterio.open(tmp_path / "lc.tif") as ds:
        assert ds.shape == (224, 224) and set(np.unique(ds.read(1))) <= {1, 2, 4, 5, 6, 7, 9}


def test_evaluation_command(trained, workdir, seed_data, tmp_path):
    """The seed's evaluation command (``EVALUATE``), run in the working folder."""
    result = run_in(workdir, as_geoseg(EVALUATE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "val.csv: 3 chips" in result.stdout
    out = workdir / "evaluation_results_unet3plus"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_cubes"] == 3 and metrics["cubes"] == str((seed_data / "val.csv").resolve())
    assert (out / "confusion_matrix.png").is_file() and (out / "evaluation_report.txt").is_file()
    assert sorted(p.name for p in (out / "examples").iterdir()) == ["example_0.png", "example_1.png", "example_2.png"]

    # a mask code outside the model's class map (3, flooded vegetation, was not in the training masks)
    masks = tmp_path / "mask"
    shutil.copytree(seed_data / "mask", masks)
    bad = masks / f"{SAMPLES[4]}_0.tif"
    with rasterio.open(bad, "r+") as ds:
        ds.write(np.full((1, 64, 64), 3, np.uint8))
    refused = run_inproc("evaluate", "--model_path", trained / "best", "--val_csv", seed_data / "val.csv",
                         "--image_root", seed_data / "images", "--mask_root", masks, "--output_path", tmp_path / "e2")
    assert "[3]" in assert_refused(refused, bad, "not in the class map")
    assert not (tmp_path / "e2").exists()


def test_inference_command(trained, workdir, seed_data, tmp_path):
    """The seed's inference command (``INFERENCE``, + its ``--save_visualizations``), run in the working folder."""
    test = workdir / "spark2024_test" / "segmentation" / "stream-1-test"
    test.mkdir(parents=True)
    for name in (f"{SAMPLES[0]}_1.tif", f"{SAMPLES[1]}_0.npy", f"{L1C_SAMPLE}_0.tif", f"{L1C_SAMPLE}_1.npy"):
        shutil.copy(seed_data / "images" / name, test / name)
    out = workdir / "submission_output_unet3plus"
    before = snapshot(test)
    result = run_in(workdir, [*as_geoseg(INFERENCE), "--save_visualizations", "--no-progress"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "predicted 4 chips (2 georeferenced)" in result.stdout
    assert_unchanged(before, test)
    written = sorted(p.name for p in out.iterdir())
    for name in (f"{SAMPLES[0]}_1", f"{SAMPLES[1]}_0", f"{L1C_SAMPLE}_0", f"{L1C_SAMPLE}_1"):
        assert f"{name}_layer.npz" in written and f"{name}_vis.png" in written
        mask = np.load(out / f"{name}_layer.npz")["mask"]
        assert mask.shape == (64, 64) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1, 2, 4, 5, 6, 7, 9}
    # the L1C chip as a GeoTIFF and as an array (its bands, no georeferencing) gives one mask
    np.testing.assert_array_equal(np.load(out / f"{L1C_SAMPLE}_0_layer.npz")["mask"],
                                  _predict_array(trained, test / f"{L1C_SAMPLE}_0.tif", tmp_path))
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
    again = run_in(workdir, [*as_geoseg(INFERENCE), "--no-progress"])
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


def _predict_array(trained: Path, tif: Path, tmp_path: Path) -> np.ndarray:
    """The mask geoseg predict writes for ``tif``'s bands saved as an array (no georeferencing)."""
    folder = tmp_path / "as_array"
    folder.mkdir()
    with rasterio.open(tif) as ds:
        np.save(folder / "chip.npy", ds.read())
    result = run_inproc("predict", "--model_path", trained / "best", "--data_path", folder, "--output_dir",
                        tmp_path / "as_array_out", "--target_size", "32", "--no-progress")
    assert result.returncode == 0, result.stderr
    return np.load(tmp_path / "as_array_out" / "chip_layer.npz")["mask"]


@pytest.mark.parametrize("command", BACKBONES, ids=["convnext", "hrnet", "efficientnet", "frozen", "deep"])
def test_training_with_different_backbones(command, monkeypatch):
    """Each command of "Training with Different Backbones" is the run it describes (the run itself
    is captured: the seed's own backbones, unsubstituted, are what geoseg would train)."""
    seen = _capture(monkeypatch, "geoseg.train.train")
    launcher, script, *args = shlex.split(command)
    result = CliRunner().invoke(_main_group(), [*SCRIPTS[script], *args, "--data_root", "spark2024",
                                                "--save_path", "m"])
    assert result.exit_code == 0, result.output
    cfg = seen["args"][0]
    assert (cfg.model, cfg.encoder, cfg.pretrained) == ("unet3plus", args[1], True)
    assert (cfg.freeze_backbone, cfg.deep_supervision) == ("--freeze_backbone" in args, "--deep_supervision" in args)
    assert (cfg.validate_every, cfg.monitor, cfg.target_mode) == (2, "val_loss", "resize")


@pytest.mark.slow
@pytest.mark.parametrize("command", BACKBONES, ids=["convnext", "hrnet", "efficientnet", "frozen", "deep"])
def test_training_with_different_backbones_runs(command, workdir, tmp_path):
    """Each of those commands trains (tiny substitutions; one epoch of the preset's 30) and its bundle
    holds what it asked for."""
    shutil.copytree(workdir / "spark2024", tmp_path / "spark2024")
    result = run_in(tmp_path, [*as_geoseg(command), "--epochs", "1", "--validate_every", "1"])  # 1 of the 30
    assert result.returncode == 0, result.stdout + result.stderr
    bundle = json.loads((tmp_path / "model_weights_unet3plus" / "best" / "config.json").read_text())
    assert bundle["model"]["encoder"] == TINY_BACKBONES[shlex.split(command)[3]]
    assert bundle["model"]["options"]["deep_supervision"] == ("--deep_supervision" in command)


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
