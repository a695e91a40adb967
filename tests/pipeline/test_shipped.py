"""The shipped pipelines validate and reference existing datasets, architectures and encoders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geoseg.pipeline import STEP_NAMES, check_pipeline, load_pipeline
from tests.conftest import REPO

PIPELINES = sorted((REPO / "pipelines").glob("*.yaml"))
# the production pipelines use each architecture's default encoder
PRODUCTION = {
    "rsprunetpp": ("rsprunetpp", "resnest101e"),
    "unet3plus": ("unet3plus", "convnext_tiny"),
    "deeplabv3plus": ("deeplabv3plus", "resnet50"),
    "pspnet": ("pspnet", "resnet50"),
}


def test_every_expected_pipeline_ships() -> None:
    assert {p.stem for p in PIPELINES} == {"demo", "demo_series", "real_samples", *PRODUCTION}


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.stem)
def test_shipped_pipeline_validates_and_builds(path: Path) -> None:
    from geoseg.features import get_recipe
    from geoseg.models import create_model

    pipeline = load_pipeline(path)
    catalog = pipeline.load_catalog()  # the dataset exists in the repository's catalog
    check_pipeline(pipeline, catalog, require_data=False)  # architecture, encoder and options exist
    assert pipeline.run_name == path.stem
    assert pipeline.catalog_path() == (REPO / "data_catalog.yaml").resolve()
    assert pipeline.steps.present() == list(STEP_NAMES)
    dataset = catalog.dataset(pipeline.dataset)
    recipe = get_recipe(dataset.recipe)
    train = pipeline.steps.train
    with torch.device("meta"):  # the full-size architecture, without allocating its weights
        model = create_model(train.model, in_channels=recipe.num_channels, num_classes=len(dataset.classes),
                             encoder=train.encoder, channel_names=list(recipe.channel_names), **train.model_kwargs())
    assert model.spec["name"] == train.model and model.spec["encoder"] == train.encoder
    assert pipeline.steps.tile.cube_size % int(getattr(model, "required_divisor", 1) or 1) == 0


@pytest.mark.parametrize("name", sorted(PRODUCTION))
def test_production_pipelines_use_the_seed_backbones_on_gpu_settings(name: str) -> None:
    pipeline = load_pipeline(REPO / "pipelines" / f"{name}.yaml")
    train = pipeline.steps.train
    assert (train.model, train.encoder) == PRODUCTION[name]
    assert train.pretrained is True and train.accelerator == "auto" and train.precision == "auto"
    assert pipeline.steps.tile.cube_size == 256
    if name == "pspnet":
        assert train.model_options["keep_dilation"] is True  # dilated ResNet-50, output stride 8
    if name == "rsprunetpp":
        assert train.model_options["masked_bn"] is True and train.deep_supervision


def test_demo_pipeline_is_the_trainer_demo_model_made_light() -> None:
    """demo.yaml: the trainer's demo model (UNet + ResNet-18, offline, batch 8, lr 2e-3) cut to encoder
    depth 4 with a narrow decoder, a one-cycle schedule, class weights, and prediction in large windows."""
    from geoseg.models import create_model
    from geoseg.train.config import DEMO_DEFAULTS

    pipeline = load_pipeline(REPO / "pipelines" / "demo.yaml")
    train, predict = pipeline.steps.train, pipeline.steps.predict
    assert pipeline.dataset == "demo" and train.pretrained is False
    assert {k: getattr(train, k) for k in DEMO_DEFAULTS if k != "epochs"} == {
        k: v for k, v in DEMO_DEFAULTS.items() if k != "epochs"}
    assert train.model_options == {"encoder_depth": 4, "decoder_channels": [128, 64, 32, 16]}
    assert (train.schedule, train.class_weights, train.epochs) == ("onecycle", "auto", 20)
    light = create_model("unet", in_channels=24, num_classes=6, encoder="resnet18", **train.model_kwargs())
    full = create_model("unet", in_channels=24, num_classes=6, encoder="resnet18")
    params = [sum(p.numel() for p in m.parameters()) for m in (light, full)]
    assert params[0] < 0.3 * params[1]  # 3.6 M instead of 14.4 M weights
    cube = pipeline.steps.tile.cube_size
    assert cube % int(light.required_divisor or 1) == 0
    assert predict.window == 256 and predict.window % cube == 0 and predict.overlap == 32


def test_real_samples_pipeline_uses_the_real_dataset() -> None:
    pipeline = load_pipeline(REPO / "pipelines" / "real_samples.yaml")
    catalog = pipeline.load_catalog()
    assert pipeline.dataset == "terramind" and len(catalog.dataset("terramind").scenes) == 5
    assert pipeline.steps.predict.dataset is None  # every scene of the dataset is predicted


def test_train_step_reaches_the_trainer_strategies(tmp_path: Path) -> None:
    """devices / num_nodes / strategy / precision in the YAML become the trainer's options."""
    from geoseg.pipeline.steps import TrainStepRunner
    from tests.pipeline._pipeline_helpers import tiny_pipeline, write_catalog, write_pipeline

    catalog = write_catalog(tmp_path / "catalog.yaml")
    path = write_pipeline(tmp_path / "ddp.yaml", tiny_pipeline(catalog, train={
        "devices": 4, "num_nodes": 2, "strategy": "deepspeed_stage_2", "precision": "bf16-mixed",
        "sync_batchnorm": True}))
    pipeline = load_pipeline(path)

    class Ctx:  # the parts of a StepContext the config builder reads
        params, run_dir, progress = pipeline.steps.train, tmp_path / "runs" / "ddp", False

    Ctx.pipeline = pipeline
    config = TrainStepRunner._train_config(Ctx, resume=False)  # type: ignore[arg-type]
    assert (config.devices, config.num_nodes, config.strategy, config.precision) == (4, 2, "deepspeed_stage_2",
                                                                                    "bf16-mixed")
    assert config.sync_batchnorm and config.cubes == tmp_path / "runs" / "ddp" / "tile" / "cubes"
    assert config.out == tmp_path / "runs" / "ddp" / "train" / "model"


def test_demo_series_pipeline_is_the_demo_model_on_the_season_with_temporal_attention() -> None:
    """demo_series.yaml: demo.yaml's light UNet with the attention front end, on the 6-date demo season."""
    from geoseg.config import load_catalog

    demo, season = (load_pipeline(REPO / "pipelines" / f"{n}.yaml") for n in ("demo", "demo_series"))
    dataset = load_catalog(REPO / "data_catalog.yaml").dataset(season.dataset)
    assert season.dataset == "demo_series" and dataset.time_steps == 6 and dataset.scenes[0].is_series
    assert season.steps.train.model_options == {**demo.steps.train.model_options, "temporal": "attention"}
    assert (season.steps.train.model, season.steps.train.encoder, season.steps.train.pretrained) == (
        "unet", "resnet18", False)
    assert season.steps.tile.cube_size == demo.steps.tile.cube_size
    assert season.steps.predict.window % season.steps.tile.cube_size == 0
