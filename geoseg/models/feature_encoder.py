"""The interface decoders consume: :class:`FeatureEncoder` and its pyramid levels.

``forward(x)`` returns the feature maps finest first, described by ``channels``,
``reductions`` (actual stride w.r.t. the input, dilation included) and ``levels`` (pyramid
level ``P_l``); ``pyramid_outputs`` maps ``"P<l>"`` to each level's channels and stride.
Decoders only use these lists, never model names. The implementations are
:class:`~geoseg.models.encoders.TimmEncoder` and
:class:`~geoseg.models.custom_encoders.ModuleEncoder`.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

from torch import Tensor, nn

from geoseg.errors import ModelError

__all__ = ["FeatureEncoder", "PyramidOutput", "nominal_levels", "warn_stride_fallback"]

logger = logging.getLogger("geoseg.models.encoders")


def nominal_levels(reductions: list[int]) -> list[int]:
    """Pyramid level of each feature; a stage that stops downsampling (dilated) still counts."""
    levels: list[int] = []
    for i, r in enumerate(reductions):
        if i > 0 and r <= reductions[i - 1]:
            levels.append(levels[-1] + 1)
        else:
            levels.append(round(math.log2(r)))
    return levels


class PyramidOutput(NamedTuple):
    """One pyramid level of an encoder (a value of ``FeatureEncoder.pyramid_outputs``)."""

    channels: int
    stride: int


class FeatureEncoder(nn.Module):
    """Base of the encoders decoders consume (see module docstring).

    Attributes:
        name: Encoder name (timm model or registered custom encoder).
        in_channels: Input channel count.
        channels: Channels of each returned feature, finest first.
        reductions: Stride of each feature w.r.t. the input.
        levels: Nominal pyramid level of each feature (``P_l``).
    """

    name: str
    in_channels: int
    channels: list[int]
    reductions: list[int]
    levels: list[int]

    def feature_at_level(self, level: int) -> int:
        """Index of the feature at pyramid level ``level``.

        Raises:
            ModelError: If the encoder has no feature at that level.
        """
        if level not in self.levels:
            raise ModelError(
                f"encoder {self.name!r} has no P{level} feature (levels {self.levels}, "
                f"reductions {self.reductions})",
                hint=f"set encoder_depth={max(self.levels)}, the deepest level it provides"
                if level > max(self.levels) else None,
            )
        return self.levels.index(level)

    @property
    def pyramid_outputs(self) -> dict[str, PyramidOutput]:
        """``{"P1": PyramidOutput(channels, stride), ...}``: the levels the decoders can use."""
        return {f"P{lv}": PyramidOutput(c, r)
                for lv, c, r in zip(self.levels, self.channels, self.reductions, strict=True)}

    def pyramid(self, x: Tensor) -> dict[str, Tensor]:
        """The feature maps of ``x`` keyed by level (``"P1"``, ...), as ``pyramid_outputs``."""
        return dict(zip(self.pyramid_outputs, self(x), strict=True))


def warn_stride_fallback(name: str, output_stride: int, actual: int) -> None:
    """The one-line note when an encoder that cannot dilate is used at its own stride."""
    logger.warning("encoder %r cannot be dilated to output_stride=%d; using it at output stride %d",
                   name, output_stride, actual)
