"""The table of :mod:`geoseg.train.lightning_config`: each LightningCLI key and what geoseg makes of it.

One :class:`Rule` per key of torchgeo's and TerraTorch's configs (``trainer``, ``model``,
``data``, ``optimizer``, ``lr_scheduler``): the geoseg option it sets and how its value
translates, the check it is (``in_channels``), or why it is refused. The same table reads the
configs and writes the docs table (docs/training.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RULES", "Rule", "Refused", "SKIP", "GEOSEG_MODELS", "CHANNELS_WHY"]

SKIP = object()
"""What :meth:`Rule.apply` returns for a value that asks nothing of geoseg."""
GEOSEG_MODELS = ("unet", "deeplabv3plus", "pspnet", "unet3plus", "rsprunetpp", "deeplabv3plus3d")
"""geoseg's architectures, as an architecture name normalised (lower case, no ``-``/``_``, ``+`` → ``plus``) reads."""


class Refused(Exception):
    """A value geoseg cannot honour: why, and the fix."""

    def __init__(self, why: str, hint: str = "remove it") -> None:
        super().__init__(why)
        self.why, self.hint = why, hint


@dataclass(frozen=True)
class Rule:
    """How one LightningCLI key reaches geoseg.

    Attributes:
        key: The dotted key (``trainer.max_epochs``); a callback is ``trainer.callbacks.CLASS``
            and its arguments ``trainer.callbacks.CLASS.ARG``; ``*`` matches within one part.
        option: The TrainConfig option it sets; ``_in_channels``, ``_num_classes`` and ``_mode``
            are checked (against the data, the monitor) instead; None: sets nothing.
        doc: How the value translates, or why the key is refused (the docs table).
        convert: The value → the option's value (or ``SKIP``); raises ``Refused``.
        accept: Values that ask nothing (``null`` always): the library's defaults.
        any_value: Every value is accepted (geoseg does this anyway).
        priority: Of two keys setting one option the higher wins (LightningCLI's ``optimizer:``
            replaces the task's ``lr``); equal priorities must agree.
    """

    key: str
    option: str | None
    doc: str
    convert: Callable[[Any], Any] | None = None
    accept: tuple[Any, ...] = ()
    any_value: bool = False
    priority: int = 0

    def apply(self, value: Any) -> Any:
        """The option's value for ``value``, or ``SKIP``.

        Raises:
            Refused: The value has no meaning in geoseg.
        """
        if value is None or self.any_value or any(_same(value, a) for a in self.accept):
            return SKIP
        if self.convert is not None:
            return self.convert(value)
        if self.option is None:
            raise Refused(self.doc)
        return value


def _same(value: Any, accepted: Any) -> bool:
    return isinstance(value, bool) == isinstance(accepted, bool) and value == accepted


# ----------------------------------------------------------------------------- value translations
def _norm(value: Any) -> str:
    return str(value).lower().replace("+", "plus").replace("-", "").replace("_", "").replace(" ", "")


def _short(class_path: Any) -> str:
    return str(class_path).rsplit(".", 1)[-1]


def _architecture(value: Any) -> str:
    name = _norm(str(value).removeprefix("smp_")).removesuffix("decoder")
    if name in GEOSEG_MODELS:
        return name
    raise Refused(f"{value!r} is not in geoseg's model zoo", hint=f"use one of {', '.join(GEOSEG_MODELS)} (geoseg models)")


def _backbone(value: Any) -> str:
    return str(value).removeprefix("tu-")  # smp's prefix of its timm encoders; geoseg's are timm names


def _weights(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    text = str(value)
    if text.lower() == "imagenet":
        return True
    if "_Weights." in text:  # a torchgeo/torchvision WeightsEnum member
        return f"torchgeo:{text.removeprefix('torchgeo:')}"
    return text  # a weights file, relative to this file


_LOSSES = {"ce": "ce", "dice": "dice", "jaccard": "dice", "focal": "focal", "cedice": "ce_dice",
           "focaldice": "focal_dice"}


def _loss(value: Any) -> str:
    name = _norm(value)
    if name in _LOSSES:
        return _LOSSES[name]
    raise Refused(f"loss {value!r} has no geoseg equivalent", hint="use ce, dice (jaccard), focal, ce_dice or focal_dice")


def _metric(value: Any) -> str:
    name = str(value).lower().replace("/", "_")
    if name in ("val_loss", "val_loss_epoch"):
        return "val_loss"
    if name.startswith("val") and ("iou" in name or "jaccard" in name):
        return "val_miou"
    raise Refused(f"geoseg monitors val_miou or val_loss, not {value!r}", hint="monitor val_loss or val_miou")


def _mode(value: Any) -> str:
    if value in ("min", "max"):
        return str(value)
    raise Refused(f"mode {value!r} is not min or max", hint="fix the value")


_PRECISIONS = {"16": "16-mixed", "16mixed": "16-mixed", "bf16": "bf16-mixed", "bf16mixed": "bf16-mixed",
               "32": "32-true", "32true": "32-true", "64": "64", "64true": "64"}


def _precision(value: Any) -> str:
    name = str(value).lower().replace("-", "")
    if name in _PRECISIONS:
        return _PRECISIONS[name]
    if name in ("16true", "bf16true"):
        raise Refused(f"{value}: geoseg keeps float32 weights", hint="use 16-mixed or bf16-mixed")
    return str(value)  # TrainConfig names the valid values


def _devices(value: Any) -> Any:
    return ",".join(str(v) for v in value) if isinstance(value, list | tuple) else value


def _strategy(value: Any) -> Any:
    if isinstance(value, Mapping):
        raise Refused("a strategy object: geoseg takes a strategy name", hint="e.g. ddp, deepspeed_stage_2, fsdp")
    return value


def _max_time(value: Any) -> str:
    if isinstance(value, Mapping):
        parts = [int(value.get(k, 0)) for k in ("days", "hours", "minutes", "seconds")]
        return ":".join(f"{p:02d}" for p in parts)
    return str(value)


def _batches(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise Refused(f"{value!r}: geoseg limits a number of batches (an int), not a fraction", hint="give an int")


def _deterministic(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise Refused(f"{value!r}: geoseg's deterministic is true or false", hint="use true or false")


def _patch_size(value: Any) -> int:
    if isinstance(value, list | tuple):
        if len(set(value)) != 1:
            raise Refused(f"{value}: geoseg trains square crops", hint="give one size")
        value = value[0]
    return int(value)


def _seed(value: Any) -> Any:
    return SKIP if isinstance(value, bool) else value  # true/false: geoseg seeds anyway (0 by default)


def _resume(value: Any) -> Any:
    if value == "last":
        return "auto"
    if value in ("best", "hpc", "registry"):
        raise Refused(f"ckpt_path {value!r}: geoseg resumes from last.ckpt", hint="use last or a .ckpt path")
    return str(value)


def _class_weights(value: Any) -> Any:
    if value in ("auto", "none"):
        return value
    raise Refused("geoseg computes class weights itself", hint="use auto (median frequency from the store) or none")


def _task_class(value: Any) -> Any:
    if _short(value) == "SemanticSegmentationTask":
        return SKIP
    raise Refused(f"{value}: geoseg trains semantic segmentation", hint="use SemanticSegmentationTask")


_OPTIMIZERS = {"adamw": "adamw", "sgd": "sgd"}
_SCHEDULES = {"reducelronplateau": "plateau", "cosineannealinglr": "cosine", "onecyclelr": "onecycle",
              "linearwarmupcosineannealinglr": "cosine"}


def _named(table: Mapping[str, str], hint: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        name = _norm(_short(value))
        if name in table:
            return table[name]
        raise Refused(f"{value!r} has no geoseg equivalent", hint=hint)
    return convert


_TO_OPTIMIZER = _named(_OPTIMIZERS, "use AdamW or SGD")
_TO_SCHEDULE = _named(_SCHEDULES, "use ReduceLROnPlateau, CosineAnnealingLR or OneCycleLR")


def _true(_: Any) -> bool:
    return True


# ----------------------------------------------------------------------------- the table
def _set(key: str, option: str, doc: str = "", convert: Callable[[Any], Any] | None = None,
         accept: tuple[Any, ...] = (), priority: int = 0) -> Rule:
    return Rule(key, option, doc, convert, accept, priority=priority)


def _refuse(key: str, why: str, accept: tuple[Any, ...] = ()) -> Rule:
    return Rule(key, None, why, accept=accept)


def _ignore(key: str, why: str) -> Rule:
    return Rule(key, None, why, any_value=True)


_NO_TEST = "geoseg train only fits (geoseg evaluate scores a split, geoseg predict maps scenes)"
_DATA_SOURCE = "geoseg reads a CubeStore (geoseg tile), chips or an array: give CUBES or data.init_args.cubes"
CHANNELS_WHY = "geoseg's input channels are the recipe's (features computed from the bands, docs/features.md)"
_OWN_LOGS = "geoseg writes its own logs (logs/metrics.csv, logs/tensorboard/, history.json)"
_ARCH_OPTION = "an option of TerraTorch's model parts; geoseg's architecture options go in model_options"
_T, _M, _D = "trainer.", "model.init_args.", "data.init_args."
_CB, _MA, _LR = "trainer.callbacks.", "model.init_args.model_args.", "lr_scheduler.init_args."

RULES: tuple[Rule, ...] = (
    _set("seed_everything", "seed", "`true`/`false` (a random seed / none): geoseg always seeds, 0 unless given",
         _seed),
    _set("ckpt_path", "resume", "`last` → `auto`; a .ckpt path (relative to this file)", _resume),
    # --- trainer
    _set(_T + "accelerator", "accelerator", "auto, cpu, gpu, cuda, mps"),
    _set(_T + "strategy", "strategy", "a strategy name (auto, ddp, deepspeed_stage_2, fsdp ...)", _strategy),
    _set(_T + "devices", "devices", "an int, auto, or a list of device ids", _devices),
    _set(_T + "num_nodes", "num_nodes"),
    _set(_T + "precision", "precision", "16/16-mixed → 16-mixed, bf16/bf16-mixed → bf16-mixed, 32/32-true → "
         "32-true, 64; not given: geoseg's auto (mixed precision on CUDA)", _precision),
    _refuse(_T + "logger", _OWN_LOGS, accept=(True,)),
    _refuse(_T + "fast_dev_run", "use trainer.max_epochs: 1 and limit_train_batches: 1", accept=(False, 0)),
    _set(_T + "max_epochs", "epochs"),
    _refuse(_T + "min_epochs", "geoseg's early stopping has no minimum (patience says how long it waits)"),
    _refuse(_T + "max_steps", "geoseg counts epochs: trainer.max_epochs (limit_train_batches: batches per epoch)",
            accept=(-1,)),
    _refuse(_T + "min_steps", "geoseg's early stopping has no minimum"),
    _set(_T + "max_time", "max_time", "DD:HH:MM:SS, or days/hours/minutes/seconds", _max_time),
    _set(_T + "limit_train_batches", "limit_batches", "an int: batches per epoch, train and val alike", _batches,
         accept=(1.0,)),
    _set(_T + "limit_val_batches", "limit_batches", "an int (as limit_train_batches)", _batches, accept=(1.0,)),
    _refuse(_T + "limit_test_batches", _NO_TEST, accept=(1.0,)),
    _refuse(_T + "limit_predict_batches", _NO_TEST, accept=(1.0,)),
    _refuse(_T + "overfit_batches", "geoseg has no overfit mode (limit_train_batches limits batches)",
            accept=(0, 0.0)),
    _refuse(_T + "val_check_interval", "geoseg validates at epoch ends (trainer.check_val_every_n_epoch)",
            accept=(1.0,)),
    _set(_T + "check_val_every_n_epoch", "validate_every"),
    _refuse(_T + "num_sanity_val_steps", "geoseg checks one validation batch before training (none on resume)"),
    _refuse(_T + "log_every_n_steps", "geoseg logs every 50 steps (every step of shorter epochs)"),
    _refuse(_T + "enable_checkpointing", "geoseg always writes checkpoints/last.ckpt and the bundles",
            accept=(True,)),
    _set(_T + "enable_progress_bar", "progress"),
    _refuse(_T + "enable_model_summary", "geoseg prints the summary with the progress bar "
            "(enable_progress_bar: false hides both)", accept=(True,)),
    _set(_T + "accumulate_grad_batches", "accumulate"),
    _set(_T + "gradient_clip_val", "grad_clip", "0: no clipping", accept=(0, 0.0)),
    _refuse(_T + "gradient_clip_algorithm", "geoseg clips the gradient norm", accept=("norm",)),
    _set(_T + "deterministic", "deterministic", "true or false", _deterministic),
    _refuse(_T + "benchmark", "geoseg keeps torch's cuDNN benchmark setting"),
    _refuse(_T + "inference_mode", "geoseg validates under torch.inference_mode", accept=(True,)),
    _refuse(_T + "use_distributed_sampler", "geoseg shards the cubes across devices itself", accept=(True,)),
    _set(_T + "profiler", "profiler", "simple or advanced (report: MODEL_DIR/profile.txt)"),
    _refuse(_T + "detect_anomaly", "geoseg has no anomaly mode", accept=(False,)),
    _refuse(_T + "barebones", "geoseg's logs, checkpoints and progress are part of every run", accept=(False,)),
    _refuse(_T + "plugins", "plugins have no geoseg equivalent (precision: trainer.precision; SLURM is detected)"),
    _set(_T + "sync_batchnorm", "sync_batchnorm"),
    _refuse(_T + "reload_dataloaders_every_n_epochs", "geoseg's loaders are built once", accept=(0,)),
    _set(_T + "default_root_dir", "out", "MODEL_DIR (relative to this file)"),
    _ignore(_T + "enable_autolog_hparams", "geoseg writes the resolved config to MODEL_DIR/config.yaml"),
    _refuse(_T + "model_registry", "geoseg's models are bundles in MODEL_DIR"),
    # --- trainer.callbacks: by class name
    _ignore(_CB + "EarlyStopping", "geoseg's early stopping (its arguments below)"),
    _set(_CB + "EarlyStopping.monitor", "monitor", "val/loss, val_loss → val_loss; val mIoU / Jaccard → val_miou",
         _metric),
    _set(_CB + "EarlyStopping.patience", "patience"),
    _set(_CB + "EarlyStopping.mode", "_mode", "min for val_loss, max for val_miou", _mode),
    _refuse(_CB + "EarlyStopping.min_delta", "geoseg counts any improvement", accept=(0, 0.0)),
    _refuse(_CB + "EarlyStopping.check_finite", "geoseg always checks", accept=(True,)),
    _refuse(_CB + "EarlyStopping.stopping_threshold", "geoseg has no stopping threshold"),
    _refuse(_CB + "EarlyStopping.divergence_threshold", "geoseg has no divergence threshold"),
    _refuse(_CB + "EarlyStopping.check_on_train_epoch_end", "geoseg checks after validation"),
    _ignore(_CB + "EarlyStopping.verbose", "geoseg logs early stopping"),
    _ignore(_CB + "EarlyStopping.strict", "geoseg's early stopping waits for the first validation"),
    _ignore(_CB + "EarlyStopping.log_rank_zero_only", "geoseg logs on rank 0"),
    _refuse(_CB + "ModelCheckpoint", "geoseg writes best/ (by monitor), final/, epoch_N/ (save_every) and "
            "checkpoints/last.ckpt itself"),
    _ignore(_CB + "LearningRateMonitor", "geoseg logs the learning rate (history.json, logs/metrics.csv)"),
    _set(_CB + "RichProgressBar", "progress", "progress: true", _true),
    _set(_CB + "TQDMProgressBar", "progress", "progress: true", _true),
    _ignore(_CB + "ModelSummary", "geoseg prints the model summary with the progress bar"),
    _ignore(_CB + "RichModelSummary", "geoseg prints the model summary with the progress bar"),
    _refuse(_CB + "*", "geoseg runs its own callbacks (early stopping, checkpoints, learning rate, progress); "
            "this one has no geoseg equivalent"),
    # --- model: torchgeo's and TerraTorch's SemanticSegmentationTask
    Rule("model.class_path", None, "SemanticSegmentationTask (torchgeo, TerraTorch); other tasks are refused",
         _task_class),
    _set(_M + "model", "model", "unet → unet, deeplabv3+ → deeplabv3plus (also pspnet, unet3plus, rsprunetpp); "
         "fcn, upernet, segformer, dpt are not in geoseg's zoo", _architecture),
    _set(_M + "backbone", "encoder", "a timm name (smp's tu- prefix dropped)", _backbone),
    _set(_M + "weights", "pretrained", "true/imagenet → true (timm hub); a torchgeo weights name → "
         "torchgeo:NAME; a file (relative to this file)", _weights),
    _set(_M + "in_channels", "_in_channels", "must equal the data's channels (24 for s2_24)"),
    _refuse(_M + "task", "geoseg trains multiclass segmentation", accept=("multiclass",)),
    _set(_M + "num_classes", "_num_classes", "must equal the data's classes"),
    _refuse(_M + "num_labels", "geoseg trains multiclass segmentation (num_classes)"),
    _refuse(_M + "num_filters", "an FCN option; geoseg has no FCN", accept=(3,)),
    _set(_M + "loss", "loss", "ce → ce, focal → focal, dice → dice, jaccard → dice (the same overlap "
         "objective: Dice = 2J / (1 + J)); bce, lovasz are refused", _loss),
    _set(_M + "class_weights", "class_weights", "auto or none; a list is refused (geoseg computes median-"
         "frequency weights from the store: auto)", _class_weights),
    _refuse(_M + "ignore_index", "geoseg ignores the label codes listed as ignore_codes in the catalog "
            "(or dataset.yaml), 0 by default"),
    _set(_M + "lr", "lr"),
    _refuse(_M + "patience", "torchgeo's patience is its ReduceLROnPlateau's; geoseg's schedule is `schedule` "
            "(early stopping: trainer.callbacks EarlyStopping patience)", accept=(10,)),
    _set(_M + "freeze_backbone", "freeze_backbone"),
    _refuse(_M + "freeze_decoder", "geoseg freezes the encoder only (freeze_backbone)", accept=(False,)),
    _refuse(_M + "freeze_head", "geoseg freezes the encoder only (freeze_backbone)", accept=(False,)),
    _refuse(_M + "model_factory", "geoseg builds its own models (model_args below)",
            accept=("EncoderDecoderFactory", "SMPModelFactory")),
    _set(_MA + "backbone", "encoder", "a timm name", _backbone),
    _set(_MA + "decoder", "model", "UNetDecoder → unet, ...; UperNetDecoder, FCNDecoder are refused",
         _architecture),
    _set(_MA + "model", "model", "SMPModelFactory's Unet → unet, DeepLabV3Plus → deeplabv3plus, PSPNet → pspnet",
         _architecture),
    _set(_MA + "num_classes", "_num_classes", "must equal the data's classes"),
    _set(_MA + "in_channels", "_in_channels", "must equal the data's channels"),
    _set(_MA + "backbone_pretrained", "pretrained", "true → timm hub weights"),
    _set(_MA + "pretrained", "pretrained", "true → timm hub weights"),
    _refuse(_MA + "backbone_bands", CHANNELS_WHY),
    _refuse(_MA + "bands", CHANNELS_WHY),
    _refuse(_MA + "necks", "geoseg's architectures join encoder and decoder themselves"),
    _refuse(_MA + "head_dropout", _ARCH_OPTION, accept=(0, 0.0)),
    _refuse(_MA + "rescale", "geoseg's outputs have the input's size", accept=(True,)),
    _refuse(_MA + "backbone_*", _ARCH_OPTION),
    _refuse(_MA + "decoder_*", _ARCH_OPTION),
    _refuse(_MA + "head_*", _ARCH_OPTION),
    _refuse(_M + "aux_heads", "geoseg's auxiliary heads: aux_head, deep_supervision"),
    _refuse(_M + "aux_loss", "geoseg's auxiliary heads: aux_head, deep_supervision"),
    _set(_M + "optimizer", "optimizer", "AdamW → adamw, SGD → sgd (Adam is refused)", _TO_OPTIMIZER),
    _set(_M + "optimizer_hparams.weight_decay", "weight_decay"),
    _refuse(_M + "optimizer_hparams.*", "geoseg's optimisers take lr and weight_decay only"),
    _set(_M + "scheduler", "schedule", "as lr_scheduler.class_path", _TO_SCHEDULE),
    _refuse(_M + "scheduler_hparams.*", "geoseg's schedules have fixed parameters (docs/training.md)"),
    _ignore(_M + "plot_on_val", "geoseg draws training_plots.png (and examples: geoseg evaluate)"),
    _refuse(_M + "class_names", "class names come from the catalog (or dataset.yaml)"),
    _refuse(_M + "tiled_inference_parameters", "geoseg predict tiles scenes itself (--window, --overlap)"),
    # --- optimizer and lr_scheduler: they replace the task's (as in LightningCLI)
    _set("optimizer.class_path", "optimizer", "AdamW → adamw, SGD → sgd; others are refused",
         _TO_OPTIMIZER, priority=1),
    _set("optimizer.init_args.lr", "lr", priority=1),
    _set("optimizer.init_args.weight_decay", "weight_decay", priority=1),
    _refuse("optimizer.init_args.momentum", "geoseg's SGD uses Nesterov momentum 0.9", accept=(0.9,)),
    _refuse("optimizer.init_args.nesterov", "geoseg's SGD uses Nesterov momentum 0.9", accept=(True,)),
    _refuse("optimizer.init_args.betas", "geoseg's AdamW uses betas (0.9, 0.999)", accept=([0.9, 0.999],)),
    _refuse("optimizer.init_args.eps", "geoseg's AdamW uses eps 1e-8", accept=(1e-8,)),
    _refuse("optimizer.init_args.*", "geoseg's optimisers take lr and weight_decay only",
            accept=(False, 0, 0.0)),
    _set("lr_scheduler.class_path", "schedule", "ReduceLROnPlateau → plateau, CosineAnnealingLR → cosine, "
         "OneCycleLR → onecycle; others are refused", _TO_SCHEDULE, priority=1),
    _set(_LR + "monitor", "monitor", "as EarlyStopping's monitor", _metric),
    _set(_LR + "mode", "_mode", "min for val_loss, max for val_miou", _mode),
    _set(_LR + "max_lr", "lr", "OneCycleLR's peak", priority=1),
    _set(_LR + "warmup_epochs", "warmup_epochs"),
    _refuse(_LR + "*", "geoseg's schedules have fixed parameters (cosine spans the run; plateau halves the lr "
            "after patience // 3 validations without improvement)"),
    # --- data
    _ignore("data.class_path", "not used: " + _DATA_SOURCE),
    _set(_D + "cubes", "cubes", "geoseg's CUBES (relative to this file)"),
    _set(_D + "data_root", "data_root", "geoseg's folder of chips (relative to this file)"),
    _set(_D + "batch_size", "batch_size", "per device"),
    _set(_D + "num_workers", "num_workers"),
    _set(_D + "patch_size", "target_size", "training crop size (target_mode crop)", _patch_size),
    _set(_D + "num_classes", "_num_classes", "must equal the data's classes"),
    _refuse(_D + "root", _DATA_SOURCE),
    _refuse(_D + "paths", _DATA_SOURCE),
    _refuse(_D + "*_data_root", _DATA_SOURCE),
    _refuse(_D + "*_split", "geoseg's splits are stored in the CubeStore (geoseg tile --split)"),
    _refuse(_D + "*_split_pct", "geoseg's splits are stored in the CubeStore (geoseg tile --split)"),
    _refuse(_D + "length", "geoseg samples every training cube once per epoch"),
    _refuse(_D + "download", "geoseg reads local data", accept=(False,)),
    _refuse(_D + "checksum", "geoseg reads local data", accept=(False,)),
    _refuse(_D + "transforms", "geoseg augments on the device (augment: flips, rotations; crops: patch_size)"),
    _refuse(_D + "aug", "geoseg augments on the device (augment: flips, rotations; crops: patch_size)"),
    _refuse(_D + "*_transform", "geoseg augments on the device (augment: flips, rotations; crops: patch_size)"),
    _refuse(_D + "means", "geoseg normalises with the training cubes' statistics"),
    _refuse(_D + "stds", "geoseg normalises with the training cubes' statistics"),
    _refuse(_D + "constant_scale", "geoseg reads reflectance with the scene's scale", accept=(1, 1.0)),
    _refuse(_D + "bands", CHANNELS_WHY),
    _refuse(_D + "dataset_bands", CHANNELS_WHY),
    _refuse(_D + "output_bands", CHANNELS_WHY),
    _refuse(_D + "rgb_indices", "geoseg's figures use B04/B03/B02"),
    _refuse(_D + "img_grep", _DATA_SOURCE),
    _refuse(_D + "label_grep", _DATA_SOURCE),
    _refuse(_D + "no_data_replace", "geoseg masks invalid pixels itself"),
    _refuse(_D + "no_label_replace", "geoseg ignores the catalog's ignore_codes"),
    _refuse(_D + "reduce_zero_label", "geoseg ignores the catalog's ignore_codes", accept=(False,)),
    _refuse(_D + "expand_temporal_dimension", "geoseg trains on single dates", accept=(False,)),
    _refuse(_D + "drop_last", "geoseg drops an incomplete last training batch", accept=(True,)),
)


