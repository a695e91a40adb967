"""``TrainConfig``: every option of ``geoseg train`` as one typed model.

The same model reads a ``--config`` YAML (unknown keys fail with the closest valid key; a
LightningCLI config of torchgeo or TerraTorch is translated, :mod:`geoseg.train.lightning_config`),
receives the CLI options (which override the YAML) and is written back, resolved, as
``MODEL_DIR/config.yaml``. ``geoseg.train.train(TrainConfig(...))`` is the Python API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypedDict

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from geoseg.config.schema import StrictModel, read_yaml, validate
from geoseg.errors import ConfigError
from geoseg.train.lightning_config import is_lightning_config, read_lightning_config

__all__ = ["TrainConfig", "TrainOptions", "LossName", "Precision", "Schedule", "Strategy", "load_train_config", "resolved_yaml",
           "DEMO_DEFAULTS", "PRESETS"]

LossName = Literal["ce_dice", "ce", "dice", "focal", "focal_dice"]
Precision = Literal["auto", "32", "32-true", "16-mixed", "bf16-mixed", "64"]
Schedule = Literal["cosine", "onecycle", "plateau", "none"]
Strategy = Literal["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "deepspeed_stage_2",
                   "deepspeed_stage_3", "fsdp"]


class _DemoDefaults(TypedDict):
    model: str
    encoder: str
    epochs: int
    batch_size: int
    lr: float


# The defaults below are the demo configuration: they reach val mIoU >= 0.80 on the demo
# scene in 30 s on 2 idle CPU cores (tests/train/test_demo_quality.py, docs/training.md).
DEMO_DEFAULTS: _DemoDefaults = {"model": "unet", "encoder": "resnet18", "epochs": 12, "batch_size": 8, "lr": 2e-3}

TRAIN_KIND = "training run"  # the ownership marker's kind of a MODEL_DIR (geoseg.utils.outputs)

# Named sets of defaults (``--preset``), applied before the YAML and the CLI values: any option
# given overrides its preset value. docs/seeds.md says where each value comes from.
PRESETS: dict[str, dict[str, Any]] = {
    # seed 001 (UNet3+ with a pretrained backbone): its training defaults that make sense offline
    # (no hub weights, no 512 px target size: geoseg chips and cubes are often smaller); its
    # --target_size resizes, so --target-size does too unless --target-mode is given
    "seed001": {"model": "unet3plus", "encoder": "convnext_tiny", "epochs": 30, "batch_size": 8, "patience": 15,
                "validate_every": 2, "monitor": "val_loss", "save_every": 10, "target_mode": "resize"},
}


class TrainConfig(StrictModel):
    """Options of a training run (``geoseg train``); see docs/training.md for a guide."""

    schema_version: Literal[1] = 1
    preset: Literal["seed001"] | None = Field(
        None, description="start from a named set of defaults (seed001: the UNet3+ seed's; docs/seeds.md); "
                          "options given override it")
    # --- data
    cubes: Path | None = Field(None, description="CubeStore directory written by `geoseg tile`, or an "
                                "(N, C+1, H, W) .npy/.npz array: channels, then the labels")
    data_root: Path | None = Field(
        None, description="instead of cubes: a folder of chips, images/ + masks/ + train.csv/val.csv "
                          "(docs/training.md)")
    out: Path | None = Field(None, description="MODEL_DIR: best/, final/, epoch_N/, checkpoints/, plots, logs")
    train_split: Literal["train", "val", "test"] = Field("train", description="split of the store used for training")
    val_split: Literal["train", "val", "test"] = Field("val", description="split used for validation (early stopping, best/)")
    target_size: int | None = Field(None, ge=8, description="training size in pixels, by random crop or resize "
                                     "(default: the cube size)")
    target_mode: Literal["crop", "resize"] = Field(
        "crop", description="crop: random crops for training, whole cubes for validation; "
                            "resize: nearest resize of training and validation cubes")
    augment: bool = Field(True, description="random flips and 90° rotations of training batches (on the device)")
    downsample: bool = Field(False, description="debug: train/validate on a random subset of the cubes")
    downsample_size: int = Field(100, ge=1, description="cubes per split kept with --downsample")
    in_memory: Literal["auto", "yes", "no"] = Field(
        "auto", description="load the cubes into RAM (auto: when they take less than 2 GB)")
    num_workers: int | None = Field(None, ge=0, description="DataLoader workers (default: 0 in memory, else 2)")
    # --- model
    model: str = Field(DEMO_DEFAULTS["model"], description="architecture (geoseg models): rsprunetpp, unet3plus, deeplabv3plus, pspnet, unet")
    encoder: str | None = Field(DEMO_DEFAULTS["encoder"], description="encoder (timm backbone); None: the architecture's default")
    pretrained: bool | Path = Field(False, description="False (offline default), True (timm hub), a local weights file, "
                                      "or torchgeo:NAME[=FILE] (torchgeo's Sentinel-2 weights)")
    freeze_backbone: bool = Field(False, description="train the decoder only (encoder weights and statistics frozen)")
    deep_supervision: bool = Field(False, description="train the deep-supervision heads (rsprunetpp, unet3plus)")
    cat_channels: int | None = Field(None, ge=1, description="UNet3+ channels per skip connection")
    aux_head: bool = Field(False, description="add the aux classification head (class presence, BCE)")
    model_options: dict[str, Any] = Field(default_factory=dict, description="other architecture options (geoseg models)")
    # --- optimisation
    epochs: int = Field(DEMO_DEFAULTS["epochs"], ge=1, description="training epochs")
    batch_size: int = Field(DEMO_DEFAULTS["batch_size"], ge=1, description="batch size per device")
    lr: float = Field(DEMO_DEFAULTS["lr"], gt=0, description="peak learning rate")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW/SGD weight decay")
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="optimiser")
    schedule: Schedule = Field("cosine", description="learning-rate schedule")
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up (cosine schedule)")
    loss: LossName = Field("ce_dice", description="mask loss")
    focal_gamma: float = Field(2.0, ge=0, description="focal loss gamma")
    class_weights: Literal["none", "auto"] = Field("none", description="auto: median-frequency weights from the store's class counts")
    deep_weight: float = Field(0.4, ge=0, description="weight of each deep-supervision head")
    aux_weight: float = Field(0.4, ge=0, description="weight of PSPNet's aux mask head")
    label_weight: float = Field(0.4, ge=0, description="weight of the aux classification loss")
    point_weight: float = Field(1.0, ge=0, description="weight of the PointRend point loss")
    grad_clip: float | None = Field(None, gt=0, description="clip the gradient norm")
    accumulate: int = Field(1, ge=1, description="accumulate gradients over this many batches")
    # --- schedule of the run
    patience: int | None = Field(15, ge=1, description="early stopping after this many validations without improvement")
    validate_every: int = Field(1, ge=1, description="validate every N epochs")
    save_every: int | None = Field(None, ge=1, description="also write epoch_N/ every N epochs")
    monitor: Literal["val_miou", "val_loss"] = Field("val_miou", description="metric selecting best/ and early stopping")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="random seed")
    # --- hardware
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = Field("auto", description="device type")
    devices: int | str = Field("auto", description="devices per node (int, 'auto' or a list like '0,1')")
    num_nodes: int = Field(1, ge=1, description="nodes (SLURM: srun starts one task per device)")
    strategy: Strategy = Field("auto", description="distributed strategy")
    precision: Precision = Field("auto", description="auto: bf16/16-mixed on CUDA, 32 on CPU")
    channels_last: Literal["auto", "yes", "no"] = Field("auto", description="auto: on CUDA")
    compile: bool = Field(False, description="torch.compile the model")
    sync_batchnorm: bool = Field(False, description="SyncBatchNorm across devices (multi-GPU)")
    deterministic: bool = Field(False, description="torch deterministic algorithms")
    # --- run control
    resume: bool | Literal["auto"] | Path = Field(
        False, description="True: continue from MODEL_DIR/checkpoints/last.ckpt; 'auto': if it exists; or a .ckpt path")
    overwrite: bool = Field(False, description="replace the outputs of an earlier run in MODEL_DIR")
    progress: bool = Field(True, description="show a progress bar (plain log lines when not a terminal)")
    max_time: str | None = Field(None, description="stop after DD:HH:MM:SS (the checkpoint allows --resume)")
    limit_batches: int | None = Field(None, ge=1, description="debug: batches per epoch (train and val)")
    profiler: Literal["simple", "advanced"] | None = Field(
        None, description="Lightning profiler; its report goes to MODEL_DIR/profile.txt")

    @field_validator("devices", mode="before")
    @classmethod
    def _devices(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        return value

    @field_validator("precision", mode="after")
    @classmethod
    def _precision(cls, value: str) -> str:
        return "32-true" if value == "32" else value

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        """The preset's values under the ones given (an unknown preset is refused by the field)."""
        if isinstance(data, dict) and isinstance(data.get("preset"), str) and data["preset"] in PRESETS:
            return {**PRESETS[data["preset"]], **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.cubes is not None and self.data_root is not None:
            raise ConfigError("give either CUBES (a CubeStore) or --data-root (a folder of chips), not both")
        if self.cat_channels is not None and self.model != "unet3plus":
            raise ValueError(f"cat_channels is a unet3plus option, but model is {self.model!r}")
        if self.model_options.get("classifier_activation") not in (None, "none", "identity"):
            raise ConfigError("model option classifier_activation turns the logits into probabilities, but "
                              "geoseg trains on logits (and the predictor applies softmax itself)",
                              hint="leave it unset for geoseg train; set it on the model you export or call")
        return self

    def model_kwargs(self) -> dict[str, Any]:
        """Architecture options for ``create_model`` (explicit flags override ``model_options``)."""
        opts = dict(self.model_options)
        if self.freeze_backbone:
            opts["freeze_backbone"] = True
        if self.deep_supervision:
            opts["deep_supervision"] = True
        if self.cat_channels is not None:
            opts["cat_channels"] = self.cat_channels
        return opts

    def to_yaml(self) -> str:
        """The resolved configuration as YAML (paths as strings)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


TrainOptions = TrainConfig
"""The training stage's options model (the name matches ``TileOptions``, ``PredictOptions``...)."""


_PATHS = ("cubes", "data_root", "out", "pretrained", "resume")  # options that may be paths


def _is_path(value: Any) -> bool:
    return isinstance(value, Path) and not str(value).startswith("torchgeo:")  # torchgeo:NAME is a weights name


def load_train_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Read a YAML config (optional) and apply ``overrides`` (None values are skipped).

    The YAML is geoseg's layout (the fields of :class:`TrainConfig`) or LightningCLI's, as
    torchgeo and TerraTorch write it (``trainer:``, ``model.init_args:`` ...;
    :mod:`geoseg.train.lightning_config`). Relative paths in the YAML are taken relative to
    the YAML's folder; paths given as overrides stay as they are (relative to the working
    directory).

    Raises:
        ConfigError: Unknown keys (with the closest valid key), invalid values, or a
            LightningCLI key that has no meaning in geoseg (with the reason).
    """
    base: dict[str, Any] = {}
    lightning = None
    if path is not None:
        data = read_yaml(path)
        if is_lightning_config(data):
            lightning = read_lightning_config(data, str(path))
            try:
                base = TrainConfig.model_validate(lightning.options).model_dump(exclude_unset=True)
            except ValidationError as err:
                raise lightning.validation_error(err) from None
        else:
            base = validate(TrainConfig, data, str(path)).model_dump(exclude_unset=True)
        root = Path(path).resolve().parent  # relative paths in the YAML are relative to the YAML
        for key in _PATHS:
            if _is_path(base.get(key)) and not base[key].is_absolute():
                base[key] = root / base[key]
    base.update({k: v for k, v in overrides.items() if v is not None})
    config = validate(TrainConfig, base, str(path) if path is not None else "train options")
    if lightning is not None:
        lightning.check(config)
    return config


def resolved_yaml(config: TrainConfig) -> str:
    """``config`` as a YAML that :func:`load_train_config` reads back to the same config (paths absolute)."""
    data = config.model_dump(mode="json")
    for key in _PATHS:
        value = getattr(config, key)
        if _is_path(value):
            data[key] = str(value.absolute())
    return yaml.safe_dump(data, sort_keys=False)
