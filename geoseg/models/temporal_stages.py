"""A 2D encoder inflated to (2+1)D: a residual temporal convolution after each stage.

The 2D encoder (any timm backbone, band-aware first layer as for a 2D model) runs on every date
of a series as ``N*T`` images. After each stage that produces a pyramid level, a
:class:`TemporalBlock` mixes the dates cell by cell — a depthwise convolution over time
(kernel ``(k, 1, 1)``, time never strided) and a pointwise convolution, added back with a
per-channel scale initialised near zero, so a pretrained backbone starts as it was trained.
Invalid (date, cell)s enter the temporal convolution as 0: a date contributes nothing where it
is masked.

The blocks sit *between* the stages (the next stage sees the mixed features, a factorised
(2+1)D network as R(2+1)D): they are forward hooks on the timm stage modules that produce the
pyramid levels. A custom encoder module, whose stages geoseg cannot see, gets the blocks on
its outputs instead.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from timm.models import FeatureDictNet, FeatureHookNet
from torch import Tensor, nn

from geoseg.errors import ModelError
from geoseg.models.encoders import TimmEncoder
from geoseg.models.feature_encoder import FeatureEncoder
from geoseg.models.temporal import level_mask

__all__ = ["TemporalBlock", "TemporalStages", "stage_modules"]


class TemporalBlock(nn.Module):
    """``x + γ · pointwise(gelu(depthwise_time(x · valid)))`` on the features of one level.

    Args:
        channels: Channels of the level.
        kernel: Time extent of the depthwise convolution (odd).
        init_scale: Initial γ (per channel).
    """

    def __init__(self, channels: int, kernel: int, init_scale: float = 1e-2) -> None:
        super().__init__()
        self.temporal = nn.Conv3d(channels, channels, (kernel, 1, 1), padding=(kernel // 2, 0, 0),
                                  groups=channels, bias=False)
        self.pointwise = nn.Conv3d(channels, channels, 1)
        self.scale = nn.Parameter(torch.full((channels,), init_scale))

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """Mix the dates of ``x`` ``(N*T, C, h, w)`` with validity ``valid`` ``(N, T, 1, H, W)``."""
        n, t = valid.shape[:2]
        m = level_mask(valid, x.shape[-2:])
        y = (x.unflatten(0, (n, t)) * m).transpose(1, 2)  # (N, C, T, h, w)
        y = self.pointwise(F.gelu(self.temporal(y))).transpose(1, 2).flatten(0, 1)
        return x + self.scale.view(1, -1, 1, 1) * y


def stage_modules(encoder: FeatureEncoder) -> list[nn.Module] | None:
    """The module whose output is each pyramid level of a timm encoder (None: not known)."""
    if not isinstance(encoder, TimmEncoder):
        return None
    model = encoder.model
    if isinstance(model, FeatureDictNet):  # FeatureListNet: modules renamed, return_layers in order
        modules = [model[name] for name in model.return_layers]
    elif isinstance(model, FeatureHookNet) or getattr(model, "feature_hooks", None) is not None:
        return None  # features read by hooks of their own, before ours could change them
    else:
        try:
            modules = [model.get_submodule(name) for name in model.feature_info.module_name()]  # type: ignore[operator, union-attr]
        except AttributeError:
            return None
    return modules if len(modules) == len(encoder.channels) else None


class TemporalStages(nn.Module):
    """One :class:`TemporalBlock` per pyramid level of ``encoder``, hooked after its stages.

    Args:
        encoder: The 2D encoder (its stage modules get the hooks when they can be located).
        kernel: Time extent of the temporal convolutions.
    """

    def __init__(self, encoder: FeatureEncoder, kernel: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(TemporalBlock(c, kernel) for c in encoder.channels)
        self._valid: Tensor | None = None  # set while a series runs through the encoder
        self._calls = 0
        modules = stage_modules(encoder)
        self.interleaved = modules is not None
        for level, module in enumerate(modules or []):
            module.register_forward_hook(functools.partial(self._after_stage, level))

    def _after_stage(self, level: int, module: nn.Module, args: Any, output: Tensor) -> Tensor | None:
        if self._valid is None:  # the encoder called on its own (one date): unchanged
            return None
        self._calls += 1
        return self.blocks[level](output, self._valid)

    def forward(self, encoder: FeatureEncoder, x: Tensor, valid: Tensor) -> list[Tensor]:
        """Run ``encoder`` on the series ``x`` ``(N, T, C, H, W)``: features ``(N, T, C_l, h_l, w_l)``.

        Raises:
            ModelError: The hooks did not run once per level (an encoder geoseg misread).
        """
        n, t = x.shape[:2]
        self._valid, self._calls = valid, 0
        try:
            features = encoder(x.flatten(0, 1))
        finally:
            self._valid = None
        if not self.interleaved:
            features = [block(f, valid) for block, f in zip(self.blocks, features, strict=True)]
        elif self._calls != len(self.blocks):
            raise ModelError(f"encoder {encoder.name!r}: {self._calls} of its {len(self.blocks)} stages "
                             "passed through the temporal blocks", hint="use another encoder")
        return [f.unflatten(0, (n, t)) for f in features]
