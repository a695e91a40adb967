"""Training losses: cross-entropy / focal + Dice on the mask, plus every auxiliary head.

:class:`SegmentationLoss` turns a :class:`~geoseg.models.ModelOutput` into one scalar::

    total = L(mask)
          + deep_weight  · Σ_i L(deep_i)          deep supervision (RSPRUNet++, UNet3+)
          + aux_weight   · L(aux_mask)            PSPNet auxiliary FCN head
          + label_weight · BCE(label, present)    aux classification head (class presence)
          + point_weight · CE(point_logits, GT sampled nearest at point_coords)   PointRend

where ``L`` is the configured mask loss (``ce_dice`` by default). Labels equal to 255 are
ignored everywhere; a batch without any labelled pixel gives a zero loss (not NaN).
Losses are computed in float32 whatever the autocast precision.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoseg.models.outputs import ModelOutput
from geoseg.models.pointrend import point_sample
from geoseg.train.config import LossName
from geoseg.train.metrics import IGNORE_INDEX

__all__ = ["LossName", "SegmentationLoss", "dice_loss", "focal_loss", "weighted_ce", "class_weights_from_counts",
           "class_presence"]



def _valid(target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    valid = target != ignore_index
    return valid, torch.where(valid, target, torch.zeros_like(target)).long()


def weighted_ce(logits: Tensor, target: Tensor, weight: Tensor | None = None,
                ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Cross-entropy averaged over labelled pixels (weighted mean with class weights)."""
    valid, safe = _valid(target, ignore_index)
    per_pixel = F.cross_entropy(logits.float(), safe, weight=weight, reduction="none")
    w = valid.float() if weight is None else weight[safe] * valid
    return (per_pixel * valid).sum() / w.sum().clamp_min(1e-12)


def focal_loss(logits: Tensor, target: Tensor, gamma: float = 2.0, weight: Tensor | None = None,
               ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Focal loss ``−α_t (1 − p_t)^γ log p_t`` (Lin et al. 2017), mean over labelled pixels.

    ``weight`` plays the role of the per-class ``α``.
    """
    valid, safe = _valid(target, ignore_index)
    logp = F.log_softmax(logits.float(), dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
    loss = -((1 - logp.exp()).clamp_min(0) ** gamma) * logp
    w = valid.float() if weight is None else weight[safe] * valid
    return (loss * w).sum() / w.sum().clamp_min(1e-12)


def dice_loss(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX, smooth: float = 1.0) -> Tensor:
    """Soft multi-class Dice loss over the batch, averaged over the classes present in the target.

    Ignored pixels contribute neither probability mass nor targets.
    """
    k = logits.shape[1]
    valid, safe = _valid(target, ignore_index)
    probs = F.softmax(logits.float(), dim=1) * valid.unsqueeze(1)
    onehot = F.one_hot(safe, k).permute(0, 3, 1, 2).float() * valid.unsqueeze(1)
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    card = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + smooth) / (card + smooth)
    present = onehot.sum(dims) > 0
    if not bool(present.any()):
        return logits.float().sum() * 0.0
    return (1 - dice)[present].mean()


def class_presence(target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """(N, K) float: 1 where class k occurs among the labelled pixels of sample n."""
    valid, safe = _valid(target, ignore_index)
    onehot = F.one_hot(safe.flatten(1), num_classes) * valid.flatten(1).unsqueeze(-1)
    return (onehot.sum(1) > 0).float()


def class_weights_from_counts(counts: Sequence[float] | np.ndarray, max_weight: float = 50.0) -> np.ndarray:
    """Median-frequency balancing (Eigen & Fergus 2015): ``w_c = median(f) / f_c``.

    Frequencies ``f`` are taken over classes with pixels; classes without any pixel get
    weight 1 (they never occur as targets). Weights are clipped to ``[1/max_weight, max_weight]``.
    """
    c = np.asarray(counts, dtype=np.float64)
    seen = c > 0
    if not seen.any():
        return np.ones_like(c)
    freq = c / c.sum()
    w = np.ones_like(c)
    w[seen] = np.median(freq[seen]) / freq[seen]
    return np.clip(w, 1.0 / max_weight, max_weight)


class SegmentationLoss(nn.Module):
    """The full training loss (see the module docstring).

    Args:
        num_classes: K.
        kind: Mask loss: ``ce_dice`` (default), ``ce``, ``dice``, ``focal``, ``focal_dice``.
        class_weights: Per-class weights for CE/focal, or None.
        focal_gamma: Focusing parameter of the focal loss.
        dice_weight: Weight of the Dice term in ``*_dice`` losses.
        deep_weight: Weight of each deep-supervision head.
        aux_weight: Weight of PSPNet's auxiliary mask head.
        label_weight: Weight of the aux classification head's BCE.
        point_weight: Weight of the PointRend point loss.
        ignore_index: Label value that is ignored.
    """

    class_weights: Tensor | None  # a non-persistent buffer

    def __init__(
        self,
        num_classes: int,
        kind: LossName = "ce_dice",
        class_weights: Sequence[float] | None = None,
        focal_gamma: float = 2.0,
        dice_weight: float = 1.0,
        deep_weight: float = 0.4,
        aux_weight: float = 0.4,
        label_weight: float = 0.4,
        point_weight: float = 1.0,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.num_classes, self.kind, self.ignore_index = num_classes, kind, ignore_index
        self.focal_gamma, self.dice_weight = focal_gamma, dice_weight
        self.deep_weight, self.aux_weight = deep_weight, aux_weight
        self.label_weight, self.point_weight = label_weight, point_weight
        weights = None if class_weights is None else torch.as_tensor(list(class_weights), dtype=torch.float32)
        if weights is not None and weights.numel() != num_classes:
            raise ValueError(f"class_weights has {weights.numel()} values for {num_classes} classes")
        self.register_buffer("class_weights", weights, persistent=False)

    def mask_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """The configured loss of one (N, K, H, W) logit map."""
        w, ii = self.class_weights, self.ignore_index
        loss = logits.float().sum() * 0.0
        if self.kind in ("ce", "ce_dice"):
            loss = loss + weighted_ce(logits, target, w, ii)
        if self.kind in ("focal", "focal_dice"):
            loss = loss + focal_loss(logits, target, self.focal_gamma, w, ii)
        if self.kind == "dice":
            loss = loss + dice_loss(logits, target, ii)
        elif self.kind.endswith("_dice"):
            loss = loss + self.dice_weight * dice_loss(logits, target, ii)
        return loss

    def forward(self, out: ModelOutput, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its parts (``mask``, ``deep``, ``aux``, ``label``, ``points``)."""
        parts = {"mask": self.mask_loss(out.mask, target)}
        if out.deep:
            parts["deep"] = self.deep_weight * sum((self.mask_loss(d, target) for d in out.deep),
                                                   start=torch.zeros((), device=target.device))
        if out.aux_mask is not None:
            parts["aux"] = self.aux_weight * self.mask_loss(out.aux_mask, target)
        if out.label is not None:
            present = class_presence(target, out.label.shape[1], self.ignore_index)
            parts["label"] = self.label_weight * F.binary_cross_entropy_with_logits(out.label.float(), present)
        if out.point_logits is not None and out.point_coords is not None:
            pt = point_sample(target.unsqueeze(1).float(), out.point_coords, mode="nearest")
            pt = pt.squeeze(1).round().long()
            parts["points"] = self.point_weight * weighted_ce(out.point_logits.unsqueeze(-1),
                                                              pt.unsqueeze(-1), None, self.ignore_index)
        total = sum(parts.values(), start=torch.zeros((), device=target.device))
        return total, parts
