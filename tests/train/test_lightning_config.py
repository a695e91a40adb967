"""LightningCLI configs (torchgeo, TerraTorch) for ``geoseg train -c``, and ``--print-config``."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from geoseg.errors import ConfigError
from geoseg.train.config import TrainConfig, load_train_config
from geoseg.train.lightning_config import RULES, markdown_table
from geoseg.train.lightning_rules import GEOSEG_MODELS
from tests.reliability.conftest import REPO, assert_refused, run_inproc

# torchgeo's SemanticSegmentationTask as its docs and `torchgeo fit --config` use it
TORCHGEO = {
    "seed_everything": 7,
    "trainer": {
        "accelerator": "cpu", "devices": 1, "precision": "bf16", "max_epochs": 3, "accumulate_grad_batches": 2,
        "gradient_clip_val": 1.0, "deterministic": True, "check_val_every_n_epoch": 2,
        "callbacks": [
            {"class_path": "lightning.pytorch.callbacks.EarlyStopping",
             "init_args": {"monitor": "val_loss", "patience": 5, "mode": "min"}},
            {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"},
        ],
    },
    "model": {"class_path": "torchgeo.trainers.SemanticSegmentationTask", "init_args": {
        "model": "deeplabv3+", "backbone": "resnet34", "weights": "ResNet18_Weights.SENTINEL2_ALL_MOCO",
        "in_channels": 24, "num_classes": 6, "loss": "jaccard", "lr": 5e-4, "patience": 10,
        "freeze_backbone": True, "task": "multiclass"}},
    "data": {"class_path": "torchgeo.datamodules.MyDataModule",
             "init_args": {"batch_size": 16, "num_workers": 2, "patch_size": 128, "cubes": "cubes"}},
}

# TerraTorch's burn-scars example (SMPModelFactory), less what geoseg refuses (logger, data paths, bands ...)
TERRATORCH = {
    "seed_everything": 0,
    "trainer": {
        "accelerator": "auto", "strategy": "auto", "devices": [0, 1], "num_nodes": 1, "precision": "16-mixed",
        "callbacks": [{"class_path": "RichProgressBar"},
                      {"class_path": "LearningRateMonitor", "init_args": {"logging_interval": "epoch"}},
                      {"class_path": "EarlyStopping", "init_args": {"monitor": "val/loss", "patience": 40}}],
        "max_epochs": 200, "check_val_every_n_epoch": 1, "enable_checkpointing": True,
        "default_root_dir": "output/BurnScars",
    },
    "data": {"class_path": "GenericNonGeoSegmentationDataModule",
             "init_args": {"batch_size": 4, "num_workers": 8, "num_classes": 2}},
    "model": {"class_path": "terratorch.tasks.SemanticSegmentationTask", "init_args": {
        "model_factory": "SMPModelFactory",
        "model_args": {"model": "Unet", "backbone": "resnet50", "pretrained": True, "in_channels": 24,
                       "num_classes": 2},
        "loss": "dice", "freeze_backbone": False, "freeze_decoder": False, "plot_on_val": 10,
        "optimizer": "Adam"}},  # TerraTorch's default, replaced by the optimizer block (as in LightningCLI)
    "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 5e-5, "weight_decay": 0.05}},
    "lr_scheduler": {"class_path": "ReduceLROnPlateau", "init_args": {"monitor": "val/loss"}},
}


def write(tmp_path: Path, data: dict, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_torchgeo_config_maps_onto_train_config(tmp_path):
    cfg = load_train_config(write(tmp_path, TORCHGEO))
    expected = TrainConfig(
        seed=7, accelerator="cpu", devices=1, precision="bf16-mixed", epochs=3, accumulate=2, grad_clip=1.0,
        deterministic=True, validate_every=2, monitor="val_loss", patience=5, model="deeplabv3plus",
        encoder="resnet34", pretrained="torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO", loss="dice", lr=5e-4,
        freeze_backbone=True, batch_size=16, num_workers=2, target_size=128, cubes=tmp_path / "cubes")
    assert cfg == expected
    assert str(cfg.pretrained) == "torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO"  # a name, not a path of the YAML


def test_terratorch_config_maps_onto_train_config(tmp_path):
    cfg = load_train_config(write(tmp_path, TERRATORCH))
    expected = TrainConfig(
        seed=0, devices="0,1", precision="16-mixed", progress=True, monitor="val_loss", patience=40, epochs=200,
        out=tmp_path / "output/BurnScars", batch_size=4, num_workers=8, model="unet", encoder="resnet50",
        pretrained=True, loss="dice", optimizer="adamw", lr=5e-5, weight_decay=0.05, schedule="plateau")
    assert cfg == expected


def torchgeo_task_defaults() -> dict:
    """The installed torchgeo's SemanticSegmentationTask arguments and defaults, read from its source
    (importing torchgeo.trainers takes 15 s)."""
    import ast
    import importlib.util

    source = Path(importlib.util.find_spec("torchgeo").origin).parent / "trainers" / "segmentation.py"
    tree = ast.parse(source.read_text())
    task = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "SemanticSegmentationTask")
    init = next(n for n in task.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    args = [a.arg for a in init.args.args[1:]]
    return dict(zip(args, (ast.literal_eval(d) for d in init.args.defaults), strict=True))


def test_lightning_print_config_defaults_ask_nothing(tmp_path):
    """What `LightningCLI --print_config` writes: every Trainer and task argument at its default."""
    import lightning.pytorch as pl

    trainer = {p.name: p.default for p in list(inspect.signature(pl.Trainer.__init__).parameters.values())[1:]}
    task = torchgeo_task_defaults()
    task.update(in_channels=24, num_classes=6)  # a geoseg store's; torchgeo's own defaults are refused below
    data = {"seed_everything": True, "trainer": trainer, "optimizer": None, "lr_scheduler": None, "ckpt_path": None,
            "model": {"class_path": "torchgeo.trainers.SemanticSegmentationTask", "init_args": task}}
    cfg = load_train_config(write(tmp_path, {"fit": data}))  # LightningCLI's full form, the subcommand on top
    # the task's own values (unet + resnet50, ce, lr 1e-3) are taken; everything else keeps geoseg's defaults
    assert cfg == TrainConfig(model="unet", encoder="resnet50", loss="ce", lr=1e-3)


def test_every_lightning_trainer_argument_has_a_rule():
    import lightning.pytorch as pl

    keys = {rule.key for rule in RULES}
    params = list(inspect.signature(pl.Trainer.__init__).parameters)[1:]
    missing = [p for p in params if f"trainer.{p}" not in keys and p != "callbacks"]
    assert not missing, f"Trainer arguments without a rule: {missing}"
    fields = set(TrainConfig.model_fields) | {"_in_channels", "_num_classes", "_mode"}
    assert {rule.option for rule in RULES if rule.option} <= fields


def test_architecture_names_are_geoseg_models():
    from geoseg.models import list_models

    assert set(GEOSEG_MODELS) == set(list_models())


@pytest.mark.parametrize(("edit", "key", "why"), [
    ({"trainer": {"logger": {"class_path": "TensorBoardLogger", "init_args": {"save_dir": "out"}}}},
     "trainer.logger", "geoseg writes its own logs"),
    ({"trainer": {"callbacks": [{"class_path": "ModelCheckpoint", "init_args": {"monitor": "val/loss"}}]}},
     "trainer.callbacks[0] (ModelCheckpoint)", "best/"),
    ({"model": {"init_args": {"ignore_index": -1}}}, "model.init_args.ignore_index", "ignore_codes"),
    ({"model": {"init_args": {"class_weights": [0.1, 0.9]}}}, "model.init_args.class_weights", "auto"),
    ({"model": {"init_args": {"model": "segformer"}}}, "model.init_args.model", "model zoo"),
    ({"trainer": {"precision": "16-true"}}, "trainer.precision", "16-mixed"),
    ({"data": {"init_args": {"root": "data/landcoverai"}}}, "data.init_args.root", "CubeStore"),
    ({"model": {"class_path": "torchgeo.trainers.ClassificationTask"}}, "model.class_path", "segmentation"),
])
def test_refused_keys_exit_2_with_one_line_naming_the_key(tmp_path, edit, key, why):
    data = yaml.safe_load(yaml.safe_dump(TORCHGEO))
    for section, values in edit.items():
        target = data[section]
        for name, value in values.items():
            if isinstance(value, dict) and isinstance(target.get(name), dict):
                target[name].update(value)
            else:
                target[name] = value
    path = write(tmp_path, data)
    line = assert_refused(run_inproc("train", "-c", path, "--print-config"), path, key, why)
    assert "unknown key" not in line


def test_every_refused_key_is_listed_after_the_first(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(TERRATORCH))
    data["trainer"]["logger"] = {"class_path": "TensorBoardLogger"}
    data["data"]["init_args"].update(means=[1.0], stds=[2.0], train_data_root="data/train")
    path = write(tmp_path, data)  # keys sorted: data, model, trainer
    line = assert_refused(run_inproc("train", "-c", path), f"{path}: data.init_args.means: geoseg normalises")
    assert line.endswith("3 more keys to change: data.init_args.stds, data.init_args.train_data_root, trainer.logger")


def test_unknown_keys_suggest_the_lightning_key(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(TORCHGEO))
    data["trainer"]["max_epoch"] = data["trainer"].pop("max_epochs")
    line = assert_refused(run_inproc("train", "-c", write(tmp_path, data)), "unknown key 'trainer.max_epoch'")
    assert "did you mean 'max_epochs'?" in line and "pretrained" not in line
    data = yaml.safe_load(yaml.safe_dump(TORCHGEO))
    data["model"]["init_args"]["backbon"] = "resnet18"
    assert "did you mean 'backbone'?" in assert_refused(run_inproc("train", "-c", write(tmp_path, data)),
                                                         "unknown key 'model.init_args.backbon'")
    data = yaml.safe_load(yaml.safe_dump(TORCHGEO))
    data["trainer"]["callbacks"][0]["init_args"]["patiance"] = 3
    assert "did you mean 'patience'?" in assert_refused(
        run_inproc("train", "-c", write(tmp_path, data)), "unknown key 'trainer.callbacks[0].init_args.patiance'")
    data["traner"] = {}  # a top-level key: named with the layout it was read as
    with pytest.raises(ConfigError, match="did you mean 'trainer'.*read as a LightningCLI config"):
        load_train_config(write(tmp_path, {"traner": {}, "trainer": {}}))


def test_bad_values_and_contradictions_name_the_lightning_key(tmp_path):
    def error(data: dict) -> str:
        with pytest.raises(ConfigError) as err:
            load_train_config(write(tmp_path, data))
        return str(err.value)

    assert re.search(r"config\.yaml: trainer\.max_epochs: Input should be greater than or equal to 1 — geoseg's "
                     r"epochs", error({"trainer": {"max_epochs": 0}}))
    assert "trainer.accelerator: Input should be" in error({"trainer": {"accelerator": "tpu"}})
    text = error({"trainer": {"limit_train_batches": 2, "limit_val_batches": 3}})
    assert "trainer.limit_train_batches (2) and trainer.limit_val_batches (3) both set geoseg's limit_batches" in text
    # LightningCLI's optimizer block replaces the task's learning rate: no contradiction
    cfg = load_train_config(write(tmp_path, {"model": {"init_args": {"lr": 1e-3}},
                                             "optimizer": {"class_path": "SGD", "init_args": {"lr": 0.1}}}))
    assert (cfg.lr, cfg.optimizer) == (0.1, "sgd")
    text = error({"trainer": {"callbacks": [{"class_path": "EarlyStopping",
                                             "init_args": {"monitor": "val/mIoU", "mode": "min"}}]}})
    assert "trainer.callbacks[0].init_args.mode: mode 'min', but geoseg's monitor val_miou is maximised" in text


def test_in_channels_and_num_classes_are_checked_against_the_data(tmp_path):
    array = tmp_path / "cubes.npy"
    np.save(array, np.zeros((2, 25, 8, 8), np.float32))  # 24 channels + the labels
    config = {"model": {"init_args": {"in_channels": 24}}, "data": {"init_args": {"cubes": "cubes.npy"}}}
    assert load_train_config(write(tmp_path, config)).cubes == array
    config["model"]["init_args"]["in_channels"] = 13
    with pytest.raises(ConfigError, match=r"model\.init_args\.in_channels: 13, but the array .*cubes\.npy has 24 "
                                          r"channels .*set it to 24 or remove it"):
        load_train_config(write(tmp_path, config))
    chips = tmp_path / "chips"
    chips.mkdir()
    (chips / "dataset.yaml").write_text(yaml.safe_dump({"classes": [
        {"code": c, "name": f"class {c}", "color": "#102030"} for c in (1, 2, 3)]}))
    config = {"model": {"init_args": {"in_channels": 24, "num_classes": 4}}, "data": {"init_args": {}}}
    with pytest.raises(ConfigError, match=r"num_classes: 4, but recipe s2_24 of the chips has 3 classes"):
        load_train_config(write(tmp_path, config), data_root=chips)  # the data given on the command line


def test_subcommand_form(tmp_path):
    path = write(tmp_path, TORCHGEO)
    result = run_inproc("train", "fit", "-c", path, "--print_config")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["model"] == "deeplabv3plus"
    line = assert_refused(run_inproc("train", "test", "-c", path), "geoseg train test", "geoseg evaluate")
    assert "--split test" in line


def test_print_config_round_trip_train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, TORCHGEO, "torchgeo.yaml")
    args = ["-c", path, "--epochs", "4", "--out", "runs/m", "--patience", "0", "--bf16", "--model-option",
            "decoder_channels=32"]
    result = run_inproc("train", *args, "--print-config")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert set(printed) == set(TrainConfig.model_fields)  # every option, defaults filled in
    assert printed["epochs"] == 4 and printed["patience"] is None and printed["out"] == str(tmp_path / "runs/m")
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written
    elsewhere = tmp_path / "other" / "train.yaml"  # the printed YAML works from another folder too
    elsewhere.parent.mkdir()
    elsewhere.write_text(result.stdout)
    original = load_train_config(path, epochs=4, out=tmp_path / "runs/m", precision="bf16-mixed",
                                 model_options={"decoder_channels": 32})
    original.patience = None
    assert load_train_config(elsewhere) == original
    again = run_inproc("train", "-c", elsewhere, "--print-config")
    assert again.stdout == result.stdout


@pytest.mark.parametrize("pipeline", sorted((REPO / "pipelines").glob("*.yaml")), ids=lambda p: p.stem)
def test_print_config_round_trip_run(tmp_path, pipeline):
    from geoseg.pipeline.schema import load_pipeline

    result = run_inproc("run", pipeline, "--print-config", "--run-dir", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "run").exists()
    printed = yaml.safe_load(result.stdout)
    assert printed["name"] == load_pipeline(pipeline).run_name and Path(printed["catalog"]).is_absolute()
    copy = tmp_path / "elsewhere.yaml"
    copy.write_text(result.stdout)
    original, reread = load_pipeline(pipeline), load_pipeline(copy)
    assert reread.steps == original.steps and reread.dataset == original.dataset
    assert reread.run_name == original.run_name and reread.catalog_path() == original.catalog_path()
    assert run_inproc("run", copy, "--print_config").stdout == result.stdout


def test_run_print_config_takes_the_scheduler_flag(tmp_path):
    result = run_inproc("run", REPO / "pipelines" / "demo.yaml", "--print-config", "--scheduler", "tcp://10.0.0.5:8786")
    assert yaml.safe_load(result.stdout)["scheduler"] == "tcp://10.0.0.5:8786"


def test_docs_table_is_the_rule_table():
    docs = (REPO / "docs" / "training.md").read_text()
    start, end = "<!-- lightning-table:start -->\n", "<!-- lightning-table:end -->"
    assert start in docs and end in docs
    assert docs.split(start, 1)[1].split(end, 1)[0] == markdown_table(), \
        "docs/training.md's table is stale: paste geoseg.train.lightning_config.markdown_table()"


def test_fit_trains_from_a_torchgeo_config(demo_cubes, tmp_path):
    config = {
        "seed_everything": 3,
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 2, "accelerator": "cpu",
                    "enable_progress_bar": False, "default_root_dir": "model"},
        "model": {"class_path": "torchgeo.trainers.SemanticSegmentationTask",
                  "init_args": {"model": "unet", "backbone": "test_resnet", "weights": False, "in_channels": 24,
                                "num_classes": 6, "loss": "focal", "lr": 0.003}},
        "data": {"init_args": {"batch_size": 4, "num_workers": 0, "cubes": str(demo_cubes)}},
    }
    result = run_inproc("train", "fit", "-c", write(tmp_path, config))
    assert result.returncode == 0, result.stderr
    assert "trained unet (test_resnet) for 1 epochs" in result.stdout
    resolved = yaml.safe_load((tmp_path / "model" / "config.yaml").read_text())
    assert {k: resolved[k] for k in ("epochs", "limit_batches", "seed", "loss", "lr", "batch_size", "encoder")} == \
        {"epochs": 1, "limit_batches": 2, "seed": 3, "loss": "focal", "lr": 0.003, "batch_size": 4,
         "encoder": "test_resnet"}


def test_docs_torchgeo_example_reads(tmp_path):
    docs = (REPO / "docs" / "training.md").read_text()
    example = next(block for block in docs.split("```yaml\n")[1:] if block.startswith("# torchgeo.yaml"))
    path = tmp_path / "configs" / "torchgeo.yaml"
    path.parent.mkdir()
    path.write_text(example.split("```", 1)[0])
    cfg = load_train_config(path)
    assert (cfg.model, cfg.encoder, str(cfg.pretrained), cfg.target_size, cfg.cubes.resolve()) == (
        "deeplabv3plus", "resnet18", "torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO", 128, tmp_path.resolve() / "cubes")
    assert (cfg.precision, cfg.monitor, cfg.patience, cfg.epochs, cfg.loss) == ("bf16-mixed", "val_loss", 10, 30, "ce")
