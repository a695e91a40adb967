"""Callbacks of geoseg train: per-epoch seeding and the model bundles, history and plots.

* :class:`EpochSeed` reseeds the augmentation generator and torch / numpy / random at the
  start of every training epoch from ``(seed, epoch, rank)``: augmentation, dropout and
  PointRend sampling of epoch ``e`` are the same whether the run was interrupted before
  ``e`` or not (resume equivalence).
* :class:`LogProgress` reports training as plain log lines where stderr is not a terminal
  (:func:`progress_callback` chooses it, or Lightning's tqdm bar on a terminal).
* :class:`BundleWriter` writes ``best/`` (when the monitored validation metric improves),
  ``epoch_N/`` (every ``save_every`` epochs) and ``final/`` (end of training) with
  :func:`~geoseg.bundle.save_bundle`, keeps the per-epoch history and redraws
  ``training_plots.png``. It is a Lightning ``Checkpoint`` so that it runs after the
  module's epoch-end metrics and before ``last.ckpt`` is saved; its state (history, best
  score) is part of that checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint, ProgressBar, TQDMProgressBar
from typing_extensions import override

from geoseg.bundle import BundleConfig, save_bundle
from geoseg.bundle.config import ModelSpec
from geoseg.train.config import TRAIN_KIND
from geoseg.train.plots import plot_training
from geoseg.utils.atomic import atomic_path
from geoseg.utils.outputs import mark_folder
from geoseg.utils.progress import (
    DEFAULT_STEP,
    emit_line,
    format_duration,
    line_interval,
    progress_mode,
)

if TYPE_CHECKING:
    from geoseg.train.module import SegmentationTask

__all__ = ["EpochSeed", "BundleWriter", "LogProgress", "epoch_seed", "progress_callback"]

log = logging.getLogger(__name__)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of one rank's training epoch."""
    return (seed * 1_000_003 + epoch * 7_919 + rank * 104_729) % (2**31 - 1)


class EpochSeed(Callback):
    """Reseed the random generators of each training epoch from ``(seed, epoch, rank)``.

    The datamodule's augmentation generator (``trainer.datamodule.generator``) is seeded at
    the epoch start; torch / numpy / random (dropout, PointRend sampling) at its first
    batch, after the dataloader iterator was created — creating it draws from torch's
    generator, and a resumed run creates it at another moment than an uninterrupted one.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def _seed(self, trainer: pl.Trainer) -> int:
        return epoch_seed(self.seed, trainer.current_epoch, trainer.global_rank)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # lightning sets Trainer.datamodule at run time; its class does not declare it
        generator = getattr(trainer.datamodule, "generator", None)  # type: ignore[attr-defined]
        if isinstance(generator, torch.Generator):
            generator.manual_seed(self._seed(trainer))

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if batch_idx == 0:
            s = self._seed(trainer)
            random.seed(s)
            np.random.seed(s)
            torch.manual_seed(s)  # also seeds every CUDA device


def progress_callback(enabled: bool) -> ProgressBar | None:
    """Training's progress display: Lightning's tqdm bar on a terminal, :class:`LogProgress` lines
    otherwise, None when off (see :func:`~geoseg.utils.progress.progress_mode`)."""
    mode = progress_mode(enabled)
    if mode == "bar":
        return TQDMProgressBar(refresh_rate=1)
    return LogProgress() if mode == "lines" else None


class LogProgress(ProgressBar):
    """Training progress as plain lines, for output that is no terminal (a log file, CI, SLURM).

    A line at the end of each training epoch (global step, losses, the epoch's validation
    scores, time so far and left) and, within long epochs, at most one every ``interval``
    seconds and 10 % of the epoch; a final line when training ends or stops. Lines go where
    :func:`~geoseg.utils.progress.emit_line` sends them (``run.log`` under ``geoseg run``).

    Args:
        interval: seconds between two lines within an epoch (default: ``GEOSEG_PROGRESS_INTERVAL``, 10).
        clock: a monotonic clock in seconds.
        write: where lines go (default: :func:`~geoseg.utils.progress.emit_line`).
    """

    def __init__(self, interval: float | None = None, clock: Callable[[], float] = time.monotonic,
                 write: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.interval = line_interval() if interval is None else interval
        self.clock, self.write = clock, write or emit_line
        self._enabled = True
        self._start = self._epoch_start = self._last = 0.0
        self._first_epoch = self._last_batch = 0
        self._validated = -1

    @override
    def disable(self) -> None:
        self._enabled = False

    @override
    def enable(self) -> None:
        self._enabled = True

    def _epoch(self, trainer: pl.Trainer) -> str:
        epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else None
        return f"epoch {trainer.current_epoch + 1}" + (f"/{epochs}" if epochs else "")

    def _metrics(self, trainer: pl.Trainer, epoch_end: bool) -> str:
        items = []
        metrics = trainer.progress_bar_metrics
        for key, value in sorted(metrics.items(), key=lambda item: item[0].startswith("val_")):  # train first
            if not isinstance(value, int | float) or key.endswith("_epoch" if not epoch_end else "_step"):
                continue
            name = key.removesuffix("_step").removesuffix("_epoch")
            if name.startswith("val_") and (not epoch_end or self._validated != trainer.current_epoch):
                continue  # the scores of an earlier epoch's validation
            items.append(f", {name} {value:.4g}")
        return "".join(items)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self._first_epoch = self.clock(), trainer.current_epoch

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = self._last = self.clock()
        self._last_batch = 0

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now, done, total = self.clock(), batch_idx + 1, self.total_train_batches
        known = math.isfinite(total) and total > 0
        if not self._enabled or now - self._last < self.interval:
            return
        if known and (done >= total or done - self._last_batch < DEFAULT_STEP * total):
            return  # the epoch's line follows, or too little done since the last line
        self._last, self._last_batch = now, done
        count = f"{done}/{int(total)} ({100 * done // int(total)} %)" if known else str(done)
        self.write(f"{self._epoch(trainer)}: batch {count}, step {trainer.global_step}"
                   f"{self._metrics(trainer, epoch_end=False)}, {format_duration(now - self._start)} elapsed")

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = trainer.current_epoch

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled:
            return
        now = self.clock()
        ran = trainer.current_epoch + 1 - self._first_epoch  # epochs run by this process (a resumed run: fewer)
        left = ""
        if trainer.max_epochs is not None and trainer.max_epochs > trainer.current_epoch + 1:
            left = f", ~{format_duration((now - self._start) / ran * (trainer.max_epochs - trainer.current_epoch - 1))} left"
        self.write(f"{self._epoch(trainer)}: step {trainer.global_step}{self._metrics(trainer, epoch_end=True)}; "
                   f"{format_duration(now - self._epoch_start)} this epoch, {format_duration(now - self._start)} "
                   f"elapsed{left}")

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._enabled:
            epochs = trainer.current_epoch - self._first_epoch  # after the loop: the completed epochs
            self.write(f"training: {epochs} epoch{'s' if epochs != 1 else ''} (step {trainer.global_step}) in "
                       f"{format_duration(self.clock() - self._start)}")

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self._enabled:
            self.write(f"training: stopped in {self._epoch(trainer)} at step {trainer.global_step} after "
                       f"{format_duration(self.clock() - self._start)}")


def _value(metrics: dict[str, Any], key: str) -> float | None:
    v = metrics.get(key)
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def _full_state_dict(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
    """The unsharded LightningModule state dict (a collective call under FSDP / ZeRO-3)."""
    if getattr(trainer.strategy, "zero_stage_3", False):
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(pl_module.parameters()), modifier_rank=None):
            return {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
    return trainer.strategy.lightning_module_state_dict()  # FSDP: full state dict gathered


class BundleWriter(Checkpoint):
    """Write model bundles, the history and the training plots (see module docstring).

    Args:
        out: MODEL_DIR.
        template: The bundle config; the spec of the model saved and the metrics are filled in here.
        monitor: ``val_miou`` (higher is better) or ``val_loss``.
        save_every: Also write ``epoch_N/`` every N epochs (None: never).
        plot_interval: Redraw ``training_plots.png`` at most this often (seconds) while
            training; it is always drawn at the end.
        resolved_config: Text of ``config.yaml``, written when fitting starts.

    Every file is written by global rank 0 only, atomically (temporary name, then rename);
    bundle writes are collective (sharded weights are gathered on every rank) and end with a
    barrier, so no rank reads a bundle before it is complete. ``config.yaml`` is written in
    :meth:`setup`, after the process group exists: ranks that Lightning launches re-run the
    training script and check MODEL_DIR for an earlier run before they join it.
    """

    def __init__(self, out: Path, template: BundleConfig, monitor: str = "val_miou",
                 save_every: int | None = None, plot_interval: float = 30.0,
                 resolved_config: str | None = None) -> None:
        self.out, self.template, self.monitor, self.save_every = Path(out), template, monitor, save_every
        self.plot_interval, self.resolved_config = plot_interval, resolved_config
        self._plotted = -math.inf
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.history: list[dict[str, Any]] = []
        self._val: dict[str, Any] | None = None

    @property
    @override
    def state_key(self) -> str:
        return "geoseg.BundleWriter"

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "history": self.history}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict["best_score"]
        self.best_epoch = state_dict["best_epoch"]
        self.history = list(state_dict["history"])

    # ------------------------------------------------------------------ writing
    def _improved(self, score: float) -> bool:
        if math.isnan(score):
            return False
        if self.best_score is None:
            return True
        return score > self.best_score if self.monitor == "val_miou" else score < self.best_score

    def write(self, trainer: pl.Trainer, pl_module: pl.LightningModule, name: str,
              metrics: dict[str, Any] | None = None, epoch: int | None = None) -> Path:
        """Write bundle ``MODEL_DIR/name`` (a collective call: every rank must call it).

        ``epoch`` (from 1) defaults to the running epoch.
        """
        state = _full_state_dict(trainer, pl_module)
        path = self.out / name
        if trainer.is_global_zero:
            mark_folder(self.out, TRAIN_KIND, [name])  # recorded before written: --overwrite may remove it
            model_state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
            extra = {**self.template.extra, "epoch": epoch if epoch is not None else trainer.current_epoch + 1,
                     "global_step": trainer.global_step, "metrics": metrics or {}}
            spec = ModelSpec.model_validate(cast("SegmentationTask", pl_module).model.spec)
            config = self.template.model_copy(update={"model": spec, "extra": extra})
            save_bundle(model_state, config, path)
        trainer.strategy.barrier("geoseg-bundle")
        return path

    # ------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero and self.resolved_config is not None:
            with atomic_path(self.out / "config.yaml") as tmp:
                tmp.write_text(self.resolved_config)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or "val" not in getattr(pl_module, "scores", {}):
            return
        task = cast("SegmentationTask", pl_module)
        scores = task.scores["val"]
        loss = _value(trainer.callback_metrics, "val_loss")
        self._val = {"epoch": trainer.current_epoch + 1, "val_loss": loss, **{f"val_{k}": v for k, v in scores.summary().items()}}
        current = scores.miou if self.monitor == "val_miou" else (loss if loss is not None else math.nan)
        if self._improved(current):
            self.best_score, self.best_epoch = float(current), trainer.current_epoch + 1
            metrics = scores.to_dict(task.class_names)
            metrics.update(val_loss=loss)
            self.write(trainer, pl_module, "best", metrics)
            log.info("epoch %d: new best %s = %.4f -> %s", self.best_epoch, self.monitor, current, self.out / "best")

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1  # epochs are counted from 1 in every output
        train = getattr(pl_module, "scores", {}).get("train")
        row: dict[str, Any] = {"epoch": epoch, "train_loss": _value(trainer.callback_metrics, "train_loss_epoch")}
        if train is not None:
            row.update({f"train_{k}": (None if math.isnan(v) else v) for k, v in train.summary().items()})
        if self._val is not None and self._val["epoch"] == epoch:
            row.update({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self._val.items()})
        opt = trainer.optimizers[0] if trainer.optimizers else None
        if opt is not None:
            row["lr"] = float(opt.param_groups[0]["lr"])
        self.history = [h for h in self.history if h["epoch"] != epoch] + [row]
        if self.save_every and epoch % self.save_every == 0:
            self.write(trainer, pl_module, f"epoch_{epoch}", {"history": row})
        if trainer.is_global_zero:
            with atomic_path(self.out / "history.json") as tmp:
                tmp.write_text(json.dumps(self.history, indent=1))
            # drawing costs ~1 s: at most every plot_interval seconds during training, always at the end
            if time.monotonic() - self._plotted >= self.plot_interval:
                self._plot()

    def _plot(self) -> None:
        plot_training(self.history, self.out / "training_plots.png")
        self._plotted = time.monotonic()

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and self.history:
            self._plot()
        last = self.history[-1] if self.history else {}
        # after the loop, current_epoch counts the completed epochs
        self.write(trainer, pl_module, "final", {"history": last, "best_epoch": self.best_epoch,
                                                 "best_" + self.monitor: self.best_score},
                   epoch=trainer.current_epoch)
