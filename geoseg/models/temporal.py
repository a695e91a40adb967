"""Time-series input: per-date validity, dates as channels and temporal attention pooling.

A series is a float tensor ``(N, T, C, H, W)``: each date is a feature stack of the recipe, its
invalid pixels 0 in every channel of that date. A pixel of a date is valid when its leading
``mask_channels`` channels are not all 0 (:func:`geoseg.validity.valid_mask` over dim 2).
Every architecture takes a series with the option ``temporal``:

* ``"channels"`` — dates as channels, the simple baseline: the input is reshaped to
  ``(N, T*C, H, W)`` and the 2D model runs unchanged on ``T*C`` channels named
  ``"t<k>:<band>"`` (:func:`~geoseg.models.first_conv.date_channel_names`), so pretrained
  RGB filters still land on every date's B04/B03/B02. Needs a fixed ``time_steps``.
* ``"attention"`` — the 2D model's encoder is shared across dates (run on ``N*T`` images); at
  each pyramid level :class:`TemporalAttention` pools the dates with a per-pixel softmax whose
  scores come from a small 1×1-conv MLP on the level's features. Masked dates get no weight; a
  pixel masked on every date pools to 0. The pooled pyramid goes to the model's own decoder and
  heads unchanged. Takes any T (``time_steps`` None) and is invariant to the order of the dates.
* ``"3d"`` — ``deeplabv3plus3d`` (:mod:`geoseg.models.deeplabv3plus3d`), natively temporal.

In every mode the input is first multiplied by its own per-date validity, so the values of an
invalid (date, pixel) never reach the network, and the input normalisation (RSPRUNet++'s masked
BatchNorm) runs date by date over valid pixels only: masked dates do not enter its statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoseg.models.first_conv import date_channel_names, default_channel_names
from geoseg.models.options import ArchOptions
from geoseg.validity import valid_mask

__all__ = [
    "SeriesFeatures",
    "TemporalAttention",
    "encoder_input",
    "level_mask",
    "masked_temporal_mean",
    "series_validity",
]


def encoder_input(in_channels: int, channel_names: Sequence[str] | None,
                  options: ArchOptions) -> tuple[int, list[str] | None]:
    """Input channels and channel names of a model's encoder.

    Args:
        in_channels: Channels C of one date.
        channel_names: Their names, or None.
        options: The architecture options (``temporal``, ``time_steps``).

    Returns:
        ``(C, names)``, or ``(T*C, date-prefixed names)`` for dates as channels (names of 3
        unnamed channels are taken as RGB there, as for a 2D model).
    """
    names = None if channel_names is None else list(channel_names)
    if options.temporal != "channels":
        return in_channels, names
    steps = int(options.time_steps or 1)
    names = names if names is not None else default_channel_names(in_channels)
    return steps * in_channels, None if names is None else date_channel_names(names, steps)


def series_validity(x: Tensor, mask_channels: int) -> Tensor:
    """Per-date validity ``(N, T, 1, H, W)`` (1.0 valid, 0.0 invalid) of a series ``(N, T, C, H, W)``."""
    return valid_mask(x, mask_channels, channel_dim=2).to(x.dtype)


def level_mask(valid: Tensor, size: Sequence[int]) -> Tensor:
    """Validity ``(N, T, 1, H, W)`` at a feature resolution ``size``: a cell is valid on a date
    when any of its pixels is (max pooling; exact for the padded sizes of the pyramid)."""
    n, t = valid.shape[:2]
    h, w = int(size[0]), int(size[1])
    big_h, big_w = int(valid.shape[-2]), int(valid.shape[-1])
    if (big_h, big_w) == (h, w):
        return valid
    flat = valid.flatten(0, 1)
    if big_h % h == 0 and big_w % w == 0:  # the pyramid's exact strides: a plain max pool (exports to ONNX)
        pooled = F.max_pool2d(flat, (big_h // h, big_w // w))
    else:
        pooled = F.adaptive_max_pool2d(flat, (h, w))
    return pooled.unflatten(0, (n, t))


def masked_temporal_mean(x: Tensor, valid: Tensor) -> Tensor:
    """Mean over the valid dates of ``x`` ``(N, T, C, h, w)`` → ``(N, C, h, w)`` (0 where none is)."""
    m = level_mask(valid, x.shape[-2:])
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


class SeriesFeatures(list[Tensor]):
    """Encoder features of a series, each ``(N, T, C, h, w)``, carrying the per-date ``valid`` mask."""

    def __init__(self, features: Sequence[Tensor], valid: Tensor) -> None:
        super().__init__(features)
        self.valid = valid


def _scorer(channels: int) -> nn.Module:
    hidden = min(64, max(16, channels // 4))
    return nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1))


class TemporalAttention(nn.Module):
    """Per-pixel attention over dates at the pyramid levels the model reads (one small scorer each).

    The score of a (date, cell) is ``w2 · relu(w1 · f + b1) + b2`` on the level's features
    ``f`` (two 1×1 convolutions, hidden width ``clamp(C / 4, 16, 64)``); masked dates get no
    weight, and a cell masked on every date pools to 0. A level nothing reads (DeepLabV3+ reads
    P2 and its deep level only) is pooled by :func:`masked_temporal_mean`, without parameters.

    Args:
        channels: Channels of each pyramid level, finest first.
        levels: Indices of the levels that get a scorer (default: all).
    """

    def __init__(self, channels: Sequence[int], levels: Sequence[int] | None = None) -> None:
        super().__init__()
        levels = range(len(channels)) if levels is None else levels
        self.scorers = nn.ModuleDict({str(i): _scorer(channels[i]) for i in levels})

    def forward(self, features: Sequence[Tensor], valid: Tensor) -> list[Tensor]:
        """Pool each level ``(N, T, C, h, w)`` over T with validity ``valid`` ``(N, T, 1, H, W)``."""
        return [self.pool(i, f, valid) if str(i) in self.scorers else masked_temporal_mean(f, valid)
                for i, f in enumerate(features)]

    def weights(self, level: int, x: Tensor, valid: Tensor) -> Tensor:
        """Attention weights ``(N, T, 1, h, w)`` of level ``level``: sum to 1 over the valid dates."""
        m = level_mask(valid, x.shape[-2:])
        scores = self.scorers[str(level)](x.flatten(0, 1)).unflatten(0, x.shape[:2])
        # the most negative finite value, not -inf: a cell masked on every date keeps finite
        # gradients (uniform weights, zeroed by the mask), and exp() of it is exactly 0
        scores = scores.masked_fill(m == 0, torch.finfo(scores.dtype).min)
        return torch.softmax(scores, dim=1) * m

    def pool(self, level: int, x: Tensor, valid: Tensor) -> Tensor:
        """The attention-weighted sum over dates of level ``level`` → ``(N, C, h, w)``."""
        return (self.weights(level, x, valid) * x).sum(dim=1)
