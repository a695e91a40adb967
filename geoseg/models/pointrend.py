"""PointRend for semantic segmentation (Kirillov et al. 2020), after detectron2's
``projects/PointRend`` (``PointRendSemSegHead``, ``StandardPointHead``, ``point_features.py``).

* Training: oversample ``k·N`` random points, keep the ``β·N`` most uncertain according to
  the coarse logits (uncertainty = −(top1 − top2)), add ``(1−β)·N`` uniform random points;
  the point head (shared MLP on fine features + coarse logits) predicts their logits.
* Inference: repeat "upsample ×2 bilinearly, pick the N most uncertain grid cells, replace
  their logits by the point head's prediction" until the output resolution is reached (one
  pass without upsampling when the coarse logits are already at that resolution).

Coordinates are normalised (x, y) in [0, 1] with ``align_corners=False`` semantics.
"""

from __future__ import annotations

from typing import Self

import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import Tensor, nn

from geoseg.errors import ModelError
from geoseg.models.options import ArchOptions, opt

__all__ = [
    "PointRendOptions",
    "PointHead",
    "point_sample",
    "calculate_uncertainty",
    "uncertain_points_with_randomness",
    "uncertain_points_on_grid",
]


class PointRendOptions(ArchOptions):
    """PointRend options shared by the architectures that support it."""

    pointrend: bool = opt(False, "add a PointRend head refining uncertain boundary points")
    point_train_points: int = opt(2048, "points sampled per image in training")
    point_subdivision_points: int = opt(8192, "points refined per subdivision step at inference")
    point_oversample_ratio: float = opt(3.0, "oversampling factor k for uncertain-point selection")
    point_importance_ratio: float = opt(0.75, "fraction beta of training points chosen by uncertainty")
    point_fc_dim: int = opt(256, "width of the point head MLP")
    point_num_fc: int = opt(3, "hidden layers of the point head MLP")

    @model_validator(mode="after")
    def _check_pointrend(self) -> Self:
        if self.point_oversample_ratio < 1 or not 0 <= self.point_importance_ratio <= 1:
            raise ModelError("point_oversample_ratio must be >= 1 and point_importance_ratio in [0, 1]")
        if min(self.point_train_points, self.point_subdivision_points, self.point_fc_dim) < 1:
            raise ModelError("PointRend point counts and point_fc_dim must be positive")
        return self


def point_sample(x: Tensor, coords: Tensor, mode: str = "bilinear") -> Tensor:
    """Sample ``x`` (N, C, H, W) at normalised points ``coords`` (N, P, 2) → (N, C, P)."""
    grid = 2.0 * coords.unsqueeze(2).to(x.dtype) - 1.0
    return F.grid_sample(x, grid, mode=mode, align_corners=False).squeeze(3)


def calculate_uncertainty(logits: Tensor) -> Tensor:
    """−(top1 − top2) over classes (dim 1); −|logit| for a single class. Keeps dim 1."""
    if logits.shape[1] == 1:
        return -logits.abs()
    top2 = torch.topk(logits, k=2, dim=1).values
    return (top2[:, 1] - top2[:, 0]).unsqueeze(1)


def uncertain_points_with_randomness(
    coarse: Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_ratio: float,
    region: tuple[float, float] = (1.0, 1.0),
) -> Tensor:
    """Training points (N, P, 2) in the valid region's frame (detectron2's scheme).

    Args:
        coarse: Coarse logits (N, K, h, w) on the padded grid.
        num_points: P.
        oversample_ratio: k; ``k·P`` candidates are scored.
        importance_ratio: β; ``β·P`` most uncertain candidates are kept.
        region: (height, width) fraction of the padded grid that holds the real input.
    """
    n = coarse.shape[0]
    n_sampled = int(num_points * oversample_ratio)
    scale = coarse.new_tensor([region[1], region[0]])
    cand = torch.rand(n, n_sampled, 2, device=coarse.device)
    unc = calculate_uncertainty(point_sample(coarse, cand * scale))[:, 0]  # (N, kP)
    n_uncertain = int(importance_ratio * num_points)
    idx = torch.topk(unc, k=n_uncertain, dim=1).indices
    coords = torch.gather(cand, 1, idx[..., None].expand(-1, -1, 2))
    n_random = num_points - n_uncertain
    if n_random > 0:
        coords = torch.cat([coords, torch.rand(n, n_random, 2, device=coarse.device)], dim=1)
    return coords


def uncertain_points_on_grid(uncertainty: Tensor, num_points: int) -> tuple[Tensor, Tensor]:
    """Flat indices (N, P) and cell-centre coords (N, P, 2) of the P most uncertain cells."""
    n, _, h, w = uncertainty.shape
    num_points = min(h * w, num_points)
    idx = torch.topk(uncertainty.reshape(n, h * w), k=num_points, dim=1).indices
    coords = torch.stack(
        [((idx % w).to(uncertainty.dtype) + 0.5) / w, ((idx // w).to(uncertainty.dtype) + 0.5) / h],
        dim=-1,
    )
    return idx, coords


class PointHead(nn.Module):
    """detectron2's ``StandardPointHead`` plus the semantic-segmentation sampling logic.

    Args:
        fine_channels: Channels of the fine-grained feature map.
        num_classes: K.
        options: PointRend options (point counts, ratios, MLP size).
    """

    def __init__(self, fine_channels: int, num_classes: int, options: PointRendOptions) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.train_points = options.point_train_points
        self.subdivision_points = options.point_subdivision_points
        self.oversample_ratio = options.point_oversample_ratio
        self.importance_ratio = options.point_importance_ratio
        layers = []
        dim_in = fine_channels + num_classes
        for _ in range(options.point_num_fc):
            layers.append(nn.Conv1d(dim_in, options.point_fc_dim, 1))
            dim_in = options.point_fc_dim + num_classes  # coarse prediction fed to every layer
        self.fc_layers = nn.ModuleList(layers)
        self.predictor = nn.Conv1d(dim_in, num_classes, 1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        assert self.predictor.bias is not None  # Conv1d has a bias by default
        nn.init.zeros_(self.predictor.bias)

    def point_logits(self, fine_points: Tensor, coarse_points: Tensor) -> Tensor:
        """MLP on (N, C_fine, P) fine and (N, K, P) coarse point features → (N, K, P)."""
        x = torch.cat([fine_points, coarse_points], dim=1)
        for layer in self.fc_layers:
            x = torch.cat([F.relu(layer(x)), coarse_points], dim=1)
        return self.predictor(x)

    def forward_train(
        self, coarse: Tensor, fine: Tensor, region: tuple[float, float] = (1.0, 1.0)
    ) -> tuple[Tensor, Tensor]:
        """Point logits (N, K, P) and their coords (N, P, 2) in the input frame."""
        with torch.no_grad():
            coords = uncertain_points_with_randomness(
                coarse.detach(), self.train_points, self.oversample_ratio, self.importance_ratio, region
            )
        grid = coords * coarse.new_tensor([region[1], region[0]])  # padded-grid frame
        logits = self.point_logits(point_sample(fine, grid), point_sample(coarse, grid))
        return logits, coords

    def subdivision_step(
        self, logits: Tensor, coarse: Tensor, fine: Tensor, size: tuple[int, int],
        valid: tuple[int, int] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Upsample ``logits`` to ``size`` and re-predict the most uncertain cells.

        Args:
            logits: Current logits (N, K, h, w).
            coarse: The original coarse logits (sampled as point features).
            fine: Fine-grained features.
            size: Target (H, W) of this step.
            valid: Valid (rows, cols) of the target grid; cells outside are never picked.

        Returns:
            The refined logits (N, K, H, W) and the flat indices (N, P) that were replaced;
            every other cell equals the bilinear upsampling of ``logits``.
        """
        up = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        unc = calculate_uncertainty(up)
        if valid is not None and (valid[0] < size[0] or valid[1] < size[1]):
            outside = torch.ones_like(unc, dtype=torch.bool)
            outside[..., : valid[0], : valid[1]] = False
            unc = unc.masked_fill(outside, float("-inf"))
        idx, coords = uncertain_points_on_grid(unc, self.subdivision_points)
        pl = self.point_logits(point_sample(fine, coords), point_sample(coarse, coords))
        n, k, h, w = up.shape
        refined = up.reshape(n, k, h * w).scatter(2, idx[:, None].expand(-1, k, -1), pl.to(up.dtype))
        return refined.view(n, k, h, w), idx

    def inference(
        self, coarse: Tensor, fine: Tensor, size: tuple[int, int], valid: tuple[int, int] | None = None
    ) -> Tensor:
        """Refine ``coarse`` by subdivision (×2 per step) up to ``size`` (N, K, H, W).

        Logits already at ``size`` (a U-Net decoder predicts at full resolution) get one
        refinement pass at that size: their most uncertain cells are re-predicted.
        """
        logits = coarse
        if tuple(logits.shape[-2:]) == tuple(size):
            logits, _ = self.subdivision_step(logits, coarse, fine, size, valid)
        while logits.shape[-2] < size[0] or logits.shape[-1] < size[1]:
            step = (min(2 * logits.shape[-2], size[0]), min(2 * logits.shape[-1], size[1]))
            valid_step = None if valid is None else (
                -(-valid[0] * step[0] // size[0]), -(-valid[1] * step[1] // size[1])
            )
            logits, _ = self.subdivision_step(logits, coarse, fine, step, valid_step)
        return logits
