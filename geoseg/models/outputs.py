"""What a model returns for training: one dataclass the trainer computes every loss from.

How the trainer turns a :class:`ModelOutput` into losses (labels use ``ignore_index=255``):

* ``mask`` (N, K, H, W) logits at input resolution — the main loss, e.g.
  ``F.cross_entropy(out.mask, target, ignore_index=255)`` (optionally + Dice).
* ``deep`` — deep-supervision logits, each (N, K, H, W) at input resolution
  (RSPRUNet++: the X(0,j) heads; UNet3+: one head per decoder stage). Same loss as
  ``mask`` on each, averaged: ``sum(loss(d, target) for d in out.deep) / len(out.deep)``,
  added with a weight (UNet++/UNet3+ papers use 1.0). Empty when deep supervision is off.
* ``aux_mask`` — PSPNet's auxiliary FCN head on the stride-16 stage, (N, K, H, W) at
  input resolution: same loss as ``mask`` with weight 0.4 (PSPNet paper). ``None`` otherwise.
* ``label`` — classification-head output (N, C) when ``aux_params`` is set. It holds
  logits when ``aux_params["activation"]`` is ``None`` (the default): use
  ``F.binary_cross_entropy_with_logits(out.label, present)`` where
  ``present[n, c] = (target[n] == c).any()`` ignoring 255 pixels.
* ``point_logits`` (N, K, P) and ``point_coords`` (N, P, 2) — PointRend training points,
  coordinates normalised to [0, 1] as (x, y) of the *input* image (detectron2 convention).
  Sample the ground truth with nearest neighbour at those points and apply cross entropy::

      grid = 2.0 * out.point_coords.unsqueeze(2) - 1.0          # (N, P, 1, 2) in [-1, 1]
      pt = F.grid_sample(target[:, None].float(), grid, mode="nearest",
                         align_corners=False).squeeze(1).squeeze(-1).long()  # (N, P)
      loss_points = F.cross_entropy(out.point_logits, pt, ignore_index=255)

  ``geoseg.models.pointrend.point_sample`` is the same helper the model uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["ModelOutput"]


@dataclass
class ModelOutput:
    """Everything a forward pass in training mode produces (see the module docstring).

    Attributes:
        mask: Segmentation logits (N, K, H, W) at input resolution.
        deep: Deep-supervision logits at input resolution; empty when disabled.
        aux_mask: Auxiliary segmentation-head logits at input resolution (PSPNet) or None.
        label: Classification-head output (N, C) or None without ``aux_params``.
        point_logits: PointRend point logits (N, K, P) or None.
        point_coords: PointRend point coordinates (N, P, 2), normalised (x, y) in [0, 1].
    """

    mask: Tensor
    deep: list[Tensor] = field(default_factory=list)
    aux_mask: Tensor | None = None
    label: Tensor | None = None
    point_logits: Tensor | None = None
    point_coords: Tensor | None = None
