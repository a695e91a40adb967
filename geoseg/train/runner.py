"""``train(config) -> TrainResult``: one Lightning run from a CubeStore to MODEL_DIR.

MODEL_DIR layout::

    best/  final/  epoch_N/        model bundles (config.json + model.safetensors)
    checkpoints/last.ckpt          Lightning checkpoint (weights, optimiser, scheduler, loops,
                                   early stopping, history) for --resume
    config.yaml                    the resolved TrainConfig
    history.json                   per-epoch losses and scores
    training_plots.png             loss, mIoU, F1 per epoch (train and val)
    logs/metrics.csv               Lightning's CSV log (+ TensorBoard events if installed)
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import yaml

from geoseg.errors import CheckpointError, ConfigError
from geoseg.train.config import TRAIN_KIND, TrainConfig
from geoseg.train.losses import class_weights_from_counts
from geoseg.utils.memory import keep_freed_memory
from geoseg.utils.outputs import (
    check_not_input,
    claim_folder,
    legacy_entries,
    mark_folder,
    remove_owned,
)

if TYPE_CHECKING:
    from lightning.pytorch.callbacks import Callback

    from geoseg.bundle.domain import TrainingDomain
    from geoseg.bundle.window_choice import WindowChoice

__all__ = ["TrainResult", "train", "resolve_hardware", "OUTPUT_NAMES"]

log = logging.getLogger(__name__)

OUTPUT_NAMES = ("best", "final", "checkpoints", "logs", "config.yaml", "history.json", "training_plots.png",
                "profile.txt")
_LEGACY = legacy_entries("config.yaml", "history.json", optional=OUTPUT_NAMES, patterns=("epoch_[0-9]*",),
                         contains={"config.yaml": "cubes:"})
_ARCH_KEYS = ("model", "encoder", "aux_head", "freeze_backbone", "deep_supervision", "cat_channels", "model_options")


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        out: MODEL_DIR.
        best: ``MODEL_DIR/best`` (None if no validation ran).
        final: ``MODEL_DIR/final``.
        best_epoch: Epoch (from 1) of the best validation score.
        best_score: Best value of ``monitor``.
        monitor: ``val_miou`` or ``val_loss``.
        metrics: Validation scores of the best epoch (per class with names).
        history: One dict per epoch (losses, mIoU, OA, F1, kappa, learning rate).
        epochs: Epochs completed.
        stopped_early: Early stopping ended the run.
        seconds: Wall time of ``trainer.fit``.
    """

    out: Path
    best: Path | None
    final: Path | None
    best_epoch: int | None
    best_score: float | None
    monitor: str
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    epochs: int = 0
    stopped_early: bool = False
    seconds: float = 0.0


ResolvedPrecision = Literal["32", "32-true", "16-mixed", "bf16-mixed", "64"]  # Precision without "auto"


def resolve_hardware(cfg: TrainConfig) -> tuple[str, ResolvedPrecision, bool]:
    """``(accelerator, precision, channels_last)`` with the ``auto`` choices made.

    CUDA present (and not excluded): mixed precision (bf16 where supported, else fp16) and
    channels-last; otherwise CPU in float32.
    """
    accelerator = cfg.accelerator
    cuda = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    if accelerator == "auto":
        accelerator = "cuda" if cuda else "cpu"
    precision: ResolvedPrecision
    if cfg.precision == "auto":
        precision = ("bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed") if cuda else "32-true"
    else:
        precision = cfg.precision
    channels_last = cfg.channels_last == "yes" or (cfg.channels_last == "auto" and cuda)
    return accelerator, precision, channels_last


def _is_rank_zero() -> bool:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _resume_path(cfg: TrainConfig, out: Path) -> Path | None:
    last = out / "checkpoints" / "last.ckpt"
    if cfg.resume is False:
        return None
    if cfg.resume == "auto":
        # the newest of the epoch checkpoint and Lightning's SLURM pre-emption checkpoints
        found = [p for p in [last, *(out / "checkpoints").glob("hpc_ckpt_*.ckpt")] if p.is_file()]
        return max(found, key=lambda p: p.stat().st_mtime) if found else None
    path = last if cfg.resume is True else Path(cfg.resume)
    if not path.is_file():
        raise CheckpointError("no checkpoint to resume from", path=path,
                              hint="check MODEL_DIR (an earlier run writes checkpoints/last.ckpt) or drop --resume")
    return path


def _check_out(cfg: TrainConfig, out: Path, resume: Path | None) -> list[str]:
    """Refuse to mix runs in one MODEL_DIR; check a resumed run trains the same architecture.

    Read-only, so that every rank of a multi-process run raises the same error (a rank that
    failed alone would leave the others waiting for it). Returns the outputs of an earlier run
    that ``overwrite`` replaces.
    """
    previous = claim_folder(out, TRAIN_KIND, flag="--out", legacy=_LEGACY)
    pretrained = cfg.pretrained if isinstance(cfg.pretrained, Path) else None
    check_not_input({"--out": out}, [cfg.cubes, cfg.data_root, pretrained])
    if resume is not None:
        old_cfg = out / "config.yaml"
        if old_cfg.is_file():
            try:
                old = yaml.safe_load(old_cfg.read_text()) or {}
            except (yaml.YAMLError, UnicodeDecodeError):
                old = None
            if not isinstance(old, dict):
                raise CheckpointError("cannot resume: the run's config.yaml is damaged (not a YAML mapping)",
                                      path=old_cfg, hint="restore it from a backup, or train into a new --out")
            new = cfg.model_dump(mode="json")
            diff = [k for k in _ARCH_KEYS if k in old and old[k] != new[k]]
            if diff:
                raise CheckpointError(f"cannot resume: {', '.join(diff)} differ from the checkpointed run",
                                      path=old_cfg, hint="use the same model options, or train into a new --out")
        return []
    if previous and not cfg.overwrite:
        raise ConfigError(f"MODEL_DIR already holds a training run ({', '.join(sorted(previous))})", path=out,
                          hint="pass --resume to continue it, --overwrite to replace it, or choose another --out")
    return previous


def _clear_out(out: Path, previous: list[str]) -> None:
    """Remove an earlier run's outputs (global rank 0 only): what geoseg wrote, never a user's file."""
    if previous:
        remove_owned(out, TRAIN_KIND, legacy=_LEGACY)
    out.mkdir(parents=True, exist_ok=True)
    mark_folder(out, TRAIN_KIND, OUTPUT_NAMES)


def _loggers(out: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger

    loggers: list[Any] = [CSVLogger(str(out), name="logs", version="")]
    if importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(out), name="logs", version="tensorboard"))
    return loggers


def _strategy(cfg: TrainConfig, accelerator: str) -> Any:
    if cfg.sync_batchnorm and accelerator == "cpu":
        raise ConfigError("sync_batchnorm needs GPUs (torch's SyncBatchNorm has no CPU implementation)",
                          hint="drop --sync-batchnorm on CPU")
    if cfg.strategy.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(f"strategy {cfg.strategy!r} needs DeepSpeed", hint="pip install deepspeed (CUDA only)")
    if cfg.strategy == "ddp" and accelerator == "cpu":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(process_group_backend="gloo")
    return cfg.strategy


def _no_interrupt_notice(record: logging.LogRecord) -> bool:
    return "Detected KeyboardInterrupt" not in record.getMessage()


def _measure_predict_window(model: torch.nn.Module, channels: int, window: int,
                            time_steps: int | None = None) -> WindowChoice:
    """The bundle's default prediction window: the fastest per pixel of the model's forward pass.

    Measured on the CPU (where analysts predict) by global rank 0; the other ranks write no bundle.
    """
    from geoseg.bundle.window_choice import WindowChoice, measure_predict_window

    if not _is_rank_zero():
        return WindowChoice(window, {})
    choice = measure_predict_window(model, channels, window, time_steps=time_steps)
    log.info("default prediction window: %d px (forward seconds per Mpx: %s)", choice.window,
             ", ".join(f"{k} px {v:.2f}" for k, v in choice.seconds_per_mpx.items()))
    return choice


def _training_domain(dm: Any, split: str) -> TrainingDomain:
    """The bundle's ``domain`` (:mod:`geoseg.bundle.domain`): levels, offset rules and scales of the
    store's scenes, channel statistics and valid fractions of the ``split`` cubes (a sample of
    at most 32 cubes for the percentiles: about a second, whatever the store's size)."""
    from geoseg.bundle.domain import build_domain, cube_percentiles

    store = dm.store
    ids = dm.split_ids(split)
    read_cube = store.read_cube
    if getattr(store, "time_steps", None):  # (T, C, H, W) -> (C, T, H, W): every valid (date, pixel) a sample
        def read_cube(i: int) -> Any:
            return store.read_cube(i).transpose(1, 0, 2, 3)
    percentiles, pixels = cube_percentiles(read_cube, ids, dm.mask_channels)
    index = store.index
    fractions = index.loc[index["cube_id"].isin(ids), "valid_fraction"].tolist()
    domain = build_domain(store.manifest, store.stats, split=split, percentiles=percentiles, sample_pixels=pixels,
                          valid_fractions=fractions)
    return domain


def train(config: TrainConfig, callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Train a model on a CubeStore and write MODEL_DIR (see the module docstring).

    Args:
        config: The run's options; ``cubes`` and ``out`` are required.
        callbacks: Extra Lightning callbacks (e.g. timing, custom logging).

    Returns:
        The :class:`TrainResult` (on every process; outputs are written by rank 0).

    Raises:
        ConfigError: Missing paths, an occupied MODEL_DIR, unusable strategy or sizes.
        CheckpointError: ``resume`` without a checkpoint, or with another architecture.
        ModelError: Unknown architecture, encoder or option.
        MissingFileError: No CubeStore at ``cubes``.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import (
        EarlyStopping,
        LearningRateMonitor,
        ModelCheckpoint,
    )

    from geoseg.bundle import BundleConfig
    from geoseg.bundle.config import ModelSpec
    from geoseg.data.datamodule import CubeDataModule
    from geoseg.train.callbacks import BundleWriter, EpochSeed, progress_callback
    from geoseg.train.module import SegmentationTask
    from geoseg.train.profiling import make_profiler

    keep_freed_memory()  # 10-30 % faster CPU steps: activations reuse the heap (geoseg.utils.memory)
    if (config.cubes is None and config.data_root is None) or config.out is None:
        raise ConfigError("training needs `cubes` (a CubeStore, or `data_root`: a folder of chips) and `out` (MODEL_DIR)",
                          hint="geoseg train CUBES --out MODEL_DIR, or set both in the --config YAML")
    out = Path(config.out)
    resume = _resume_path(config, out)
    previous = _check_out(config, out, resume)  # on every rank: all fail alike, before any process group
    pl.seed_everything(config.seed, workers=True, verbose=False)
    if config.data_root is not None:  # seed 001's form: chips read as a CubeStore (geoseg.data.chips)
        from geoseg.data.chips import ChipStore

        source: Any = ChipStore.open_root(config.data_root)
    else:
        source = config.cubes
    dm = CubeDataModule(
        source, batch_size=config.batch_size, num_workers=config.num_workers, target_size=config.target_size,
        target_mode=config.target_mode, augment=config.augment, train_split=config.train_split,
        val_split=config.val_split, downsample=config.downsample_size if config.downsample else None,
        seed=config.seed, in_memory=config.in_memory,
    )
    dm.setup("fit")  # a damaged store or empty splits fail here, before anything is written
    weights = None
    if config.class_weights == "auto":
        weights = [float(w) for w in class_weights_from_counts(dm.class_counts(config.train_split))]
    accelerator, precision, channels_last = resolve_hardware(config)
    time_steps = getattr(dm.store, "time_steps", None)  # a series store: cubes (T, C, H, W)
    task = SegmentationTask(config.model_dump(mode="json"), in_channels=dm.store.num_channels,
                            channel_names=dm.channel_names, class_names=dm.class_names,
                            class_weights=weights, channels_last=channels_last, mask_channels=dm.mask_channels,
                            time_steps=time_steps)
    if _is_rank_zero():  # the model builds: now an earlier run may be replaced
        _clear_out(out, previous)
    predict_window = _measure_predict_window(task.model, dm.store.num_channels, dm.window, time_steps)
    template = BundleConfig(  # BundleWriter fills in the spec of the model it saves and the metrics
        model=ModelSpec.model_validate(task.model.spec), recipe=dm.store.recipe, channel_names=dm.channel_names,
        classes=dm.classes, normalization=dm.normalization, window=dm.window, predict_window=predict_window.window,
        predict_window_costs={k: round(v, 4) for k, v in predict_window.seconds_per_mpx.items()} or None,
        mask_channels=dm.mask_channels, time_steps=time_steps, target_size=config.target_size, target_mode=config.target_mode,
        domain=_training_domain(dm, config.train_split),  # what predict compares a scene with
        extra={"cubes": str(Path(dm.store.path).resolve()), "cube_size": dm.store.cube_size,
               "class_weights": weights, "train": config.model_dump(mode="json")},
    )
    # every output of the run (config.yaml, bundles, history, plots) is written by global rank 0
    writer = BundleWriter(out, template, monitor=config.monitor, save_every=config.save_every,
                          resolved_config=config.to_yaml())
    mode = "max" if config.monitor == "val_miou" else "min"
    hooks: list[Any] = [*callbacks, EpochSeed(config.seed), LearningRateMonitor(logging_interval="epoch"), writer,
                            ModelCheckpoint(dirpath=out / "checkpoints", filename="last", monitor=None, save_top_k=1,
                                            save_on_train_epoch_end=True, enable_version_counter=False)]
    if config.patience is not None:
        hooks.insert(0, EarlyStopping(monitor=config.monitor, mode=mode, patience=config.patience, strict=False))
    display = progress_callback(config.progress)  # a bar on a terminal, log lines otherwise
    if display is not None:
        hooks.append(display)
    steps_per_epoch = max(1, len(dm.split_ids(config.train_split)) // config.batch_size)
    trainer = pl.Trainer(
        max_epochs=config.epochs, accelerator=accelerator, devices=config.devices, num_nodes=config.num_nodes,
        strategy=_strategy(config, accelerator), precision=precision, callbacks=hooks, logger=_loggers(out),
        check_val_every_n_epoch=config.validate_every, gradient_clip_val=config.grad_clip,
        accumulate_grad_batches=config.accumulate, deterministic=config.deterministic,
        sync_batchnorm=config.sync_batchnorm, default_root_dir=str(out / "checkpoints"),
        enable_progress_bar=display is not None, enable_model_summary=config.progress, log_every_n_steps=min(50, steps_per_epoch),
        max_time=config.max_time, limit_train_batches=config.limit_batches, limit_val_batches=config.limit_batches,
        use_distributed_sampler=False, num_sanity_val_steps=0 if resume else 1,
        profiler=make_profiler(config.profiler, str(out)),
    )
    start = time.perf_counter()
    notices = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    notices.addFilter(_no_interrupt_notice)  # Ctrl-C: the CLI prints one line of its own
    try:
        trainer.fit(task, datamodule=dm, ckpt_path=str(resume) if resume else None)
    except SystemExit:
        if trainer.interrupted:  # Lightning exits with code 1 after Ctrl-C; it is an interrupt (exit code 130)
            raise KeyboardInterrupt from None
        raise
    finally:
        notices.removeFilter(_no_interrupt_notice)
    seconds = time.perf_counter() - start
    best = out / "best" if (out / "best").is_dir() else None
    metrics: dict[str, Any] = {}
    if best is not None:
        from geoseg.bundle import read_bundle_config

        metrics = read_bundle_config(best).extra.get("metrics", {})
    stopper = next((c for c in hooks if isinstance(c, EarlyStopping)), None)
    return TrainResult(
        out=out, best=best, final=out / "final" if (out / "final").is_dir() else None,
        best_epoch=writer.best_epoch, best_score=writer.best_score, monitor=config.monitor, metrics=metrics,
        history=list(writer.history), epochs=trainer.current_epoch,
        stopped_early=bool(stopper is not None and stopper.stopped_epoch > 0), seconds=seconds,
    )
