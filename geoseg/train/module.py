"""``SegmentationTask``: the LightningModule of geoseg train (one shared step for all stages).

Batches are dicts ``{"image": (N, C, H, W) float (a series store: (N, T, C, H, W)), "mask": (N, H, W) labels, 255 = ignore}``
already normalised and augmented by :class:`~geoseg.data.CubeDataModule` on the device.
Training uses ``model.forward_train`` and the full :class:`SegmentationLoss` (deep
supervision, aux heads, PointRend points); validation and test use ``model(x)`` — exactly
what predict and evaluate run — and the mask loss. Each stage accumulates one
``MulticlassConfusionMatrix(ignore_index=255)`` over the epoch; the scores of
:func:`~geoseg.train.metrics.confusion_scores` are logged as ``{stage}_miou``, ``_oa``,
``_f1``, ``_kappa`` and ``{stage}_iou/<class>`` at the end of every epoch.
"""

from __future__ import annotations

import math
from typing import Any, Literal, cast

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassConfusionMatrix
from typing_extensions import override

from geoseg.bundle.config import recipe_model_options
from geoseg.models import create_model
from geoseg.train.config import TrainConfig
from geoseg.train.losses import SegmentationLoss
from geoseg.train.metrics import IGNORE_INDEX, Scores, confusion_scores
from geoseg.train.series import series_model_options

__all__ = ["SegmentationTask", "Stage"]

Stage = Literal["train", "val", "test"]


class SegmentationTask(pl.LightningModule):
    """Model + loss + metrics + optimiser for one training run.

    Args:
        config: The run's options (``TrainConfig.model_dump(mode="json")``).
        in_channels: Input channels of the cubes.
        channel_names: Their names (band-aware pretrained weights).
        class_names: Name of each training class index.
        class_weights: Per-class loss weights, or None.
        channels_last: Use the channels-last memory format (CUDA).
        mask_channels: The recipe's mask channels (``Recipe.num_mask_channels``), for
            architectures with a valid-pixel mask (RSPRUNet++); None keeps their default.
        time_steps: Dates per cube of a series store (input ``(N, T, C, H, W)``; the model's
            ``temporal`` mode is picked by :func:`~geoseg.train.series.series_model_options`),
            None for a single-date store.
    """

    def __init__(
        self,
        config: dict[str, Any],
        in_channels: int,
        channel_names: list[str],
        class_names: list[str],
        class_weights: list[float] | None = None,
        channels_last: bool = False,
        mask_channels: int | None = None,
        time_steps: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        cfg = TrainConfig.model_validate(config)
        self.cfg, self.class_names = cfg, list(class_names)
        k = len(class_names)
        pretrained: bool | str = str(cfg.pretrained) if not isinstance(cfg.pretrained, bool) else cfg.pretrained
        options = cfg.model_kwargs()
        if mask_channels is not None:
            options = recipe_model_options(cfg.model, options, mask_channels)
        options = series_model_options(cfg.model, options, time_steps, cfg.cubes)
        self.model = create_model(
            cfg.model, in_channels=in_channels, num_classes=k, encoder=cfg.encoder, pretrained=pretrained,
            channel_names=channel_names, aux_params={"classes": k} if cfg.aux_head else None,
            options=options,
        )
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.criterion = SegmentationLoss(
            k, cfg.loss, class_weights, focal_gamma=cfg.focal_gamma, deep_weight=cfg.deep_weight,
            aux_weight=cfg.aux_weight, label_weight=cfg.label_weight, point_weight=cfg.point_weight,
        )
        self.confusion = nn.ModuleDict({
            f"{stage}_cm": MulticlassConfusionMatrix(k, ignore_index=IGNORE_INDEX, validate_args=False)
            for stage in ("train", "val", "test")
        })
        self.scores: dict[str, Scores] = {}
        self._train_forward = self.model.forward_train
        self._eval_forward = self.model.forward
        if cfg.compile:
            # static shapes: a graph per batch shape (full and last batch, train and val). With
            # dynamic shapes, torch 2.14's inductor fails on the recompile for the val batch size
            # ("TensorReferenceAnalysis has no attribute python_mod").
            self._train_forward = torch.compile(self.model.forward_train, dynamic=False)
            self._eval_forward = torch.compile(self.model.forward, dynamic=False)

    # ------------------------------------------------------------------ steps
    def forward(self, x: Tensor) -> Tensor:
        """Segmentation logits (N, K, H, W), as predict computes them."""
        out = self._eval_forward(x)
        return out[0] if isinstance(out, tuple) else out

    def _step(self, batch: dict[str, Tensor], stage: Stage) -> Tensor:
        x, y = batch["image"], batch["mask"].long()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if stage == "train":
            out = self._train_forward(x)
            loss, parts = self.criterion(out, y)
            logits = out.mask
            if len(parts) > 1:
                self.log_dict({f"train_loss/{k}": v.detach() for k, v in parts.items()},
                              on_step=False, on_epoch=True, sync_dist=True, batch_size=x.shape[0])
        else:
            logits = self(x)
            loss = self.criterion.mask_loss(logits, y)
        # max(1).indices: the same classes as argmax(1), ~10x faster on CPU for (N, K, H, W)
        self._confusion(stage).update(logits.detach().max(1).indices, y)
        self.log(f"{stage}_loss", loss.detach(), on_step=stage == "train", on_epoch=True,
                 prog_bar=True, sync_dist=True, batch_size=x.shape[0])
        return loss

    def _confusion(self, stage: Stage) -> MulticlassConfusionMatrix:
        return cast(MulticlassConfusionMatrix, self.confusion[f"{stage}_cm"])

    @override
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    @override
    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    @override
    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    # ------------------------------------------------------------------ epoch ends
    def _epoch_end(self, stage: Stage) -> None:
        cm = self._confusion(stage)
        if not cm.update_called and not self.trainer.world_size > 1:
            return
        scores = confusion_scores(cm.compute())  # synced over processes by torchmetrics
        cm.reset()
        if self.trainer.sanity_checking:
            return
        self.scores[stage] = scores
        summary = scores.summary()
        # the monitored mIoU is always logged (0 when nothing was labelled), on the bar for val/test
        self.log(f"{stage}_miou", 0.0 if math.isnan(scores.miou) else scores.miou, prog_bar=stage != "train")
        logged = {f"{stage}_{k}": v for k, v in summary.items() if k != "miou" and not math.isnan(v)}
        logged.update({f"{stage}_iou/{name}": float(v) for name, v in zip(self.class_names, scores.iou, strict=True)
                       if not math.isnan(v)})
        self.log_dict(logged)

    @override
    def on_train_epoch_end(self) -> None:
        self._epoch_end("train")

    @override
    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    @override
    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    # ------------------------------------------------------------------ optimisation
    @override
    def configure_optimizers(self) -> Any:
        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9,
                                                         weight_decay=cfg.weight_decay, nesterov=True)
        else:
            # the fused kernel is several times faster than the per-tensor loop (CPU and CUDA)
            # (not under DeepSpeed/FSDP, nor with fp16 gradient clipping, which needs unscaled grads)
            fused = cfg.strategy.startswith("ddp") or cfg.strategy == "auto"
            if cfg.grad_clip and str(self.trainer.precision).startswith("16"):
                fused = False
            opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)
        if cfg.schedule == "none":
            return opt
        if cfg.schedule == "plateau":
            mode: Literal["min", "max"] = "max" if cfg.monitor == "val_miou" else "min"
            sched: Any = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode=mode, factor=0.5, patience=max(1, (cfg.patience or 6) // 3))
            return {"optimizer": opt, "lr_scheduler": {
                "scheduler": sched, "monitor": cfg.monitor, "interval": "epoch",
                "frequency": cfg.validate_every, "strict": False}}
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if cfg.schedule == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total)
        else:
            steps_per_epoch = max(1, total // max(1, cfg.epochs))
            warmup = min(total - 1, int(round(cfg.warmup_epochs * steps_per_epoch)))
            sched = torch.optim.lr_scheduler.LambdaLR(opt, _cosine(total, warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class _cosine:  # noqa: N801 - a picklable lr lambda (checkpoints pickle scheduler state)
    """Linear warm-up then cosine decay to 0 over ``total`` steps."""

    def __init__(self, total: int, warmup: int) -> None:
        self.total, self.warmup = total, warmup

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
