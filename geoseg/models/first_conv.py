"""Band-aware first convolution: map pretrained input filters onto named input channels.

Pretrained weights declare the bands they were trained on (ImageNet RGB = ``B04, B03, B02``
in Sentinel-2 names; torchgeo weights list theirs in ``weights.meta["bands"]``). Each target
channel whose (normalised) name is among the source bands receives that band's filter.
Every other channel receives the mean of all source filters. The whole kernel is then
scaled by ``n_source / n_target`` so that, for inputs of similar magnitude in every channel,
the expected pre-activation stays what the pretrained network saw (the rule timm's
``adapt_input_conv`` uses, 3 / in_chans for RGB). The mapping is logged at INFO level.
Channels are matched by name only — never by position.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from geoseg.errors import ModelError

__all__ = [
    "RGB_BANDS",
    "BandMapping",
    "normalize_band_name",
    "adapt_first_conv_weight",
]

logger = logging.getLogger(__name__)

#: ImageNet RGB order expressed as Sentinel-2 bands (red, green, blue).
RGB_BANDS: tuple[str, str, str] = ("B04", "B03", "B02")

_ALIASES = {"RED": "B04", "GREEN": "B03", "BLUE": "B02", "NIR": "B08", "R": "B04", "G": "B03"}
_BAND_RE = re.compile(r"^B0*(\d{1,2})(A?)$")


def normalize_band_name(name: str) -> str:
    """Canonical Sentinel-2 spelling: ``"b4"``, ``"B4"``, ``"red"`` → ``"B04"``; ``"b8a"`` → ``"B8A"``.

    Names that are not Sentinel-2 bands (``"NDVI"``, ``"VV"``) are returned upper-cased.
    """
    key = name.strip().upper()
    key = _ALIASES.get(key, key)
    match = _BAND_RE.match(key)
    if match is None:
        return key
    number, suffix = match.groups()
    return f"B{int(number)}A" if suffix else f"B{int(number):02d}"


@dataclass(frozen=True)
class BandMapping:
    """Which source band fed each target channel (None = mean initialisation)."""

    target_channels: tuple[str, ...]
    source_index: tuple[int | None, ...]
    scale: float

    @property
    def matched(self) -> dict[str, int]:
        """Target channel name → source filter index for channels that were matched."""
        return {
            c: i for c, i in zip(self.target_channels, self.source_index, strict=True) if i is not None
        }

    def describe(self, source_bands: Sequence[str]) -> str:
        """One-line human summary used for logging."""
        copied = ", ".join(f"{c}<-{source_bands[i]}" for c, i in self.matched.items()) or "none"
        n_mean = sum(i is None for i in self.source_index)
        return f"copied [{copied}]; {n_mean} channel(s) mean-initialised; scaled by {self.scale:.4g}"


def adapt_first_conv_weight(
    weight: Tensor,
    source_bands: Sequence[str],
    target_channels: Sequence[str],
    *,
    rescale: bool = True,
    log_name: str = "first conv",
) -> tuple[Tensor, BandMapping]:
    """Build a first-conv kernel for ``target_channels`` from one trained on ``source_bands``.

    Args:
        weight: Pretrained kernel (out, len(source_bands), kh, kw).
        source_bands: Band name of each input channel of ``weight``.
        target_channels: Name of each input channel of the new model.
        rescale: Multiply by ``len(source_bands) / len(target_channels)`` (see module doc).
        log_name: Layer name used in the log message.

    Returns:
        The new kernel (out, len(target_channels), kh, kw) and the mapping applied.

    Raises:
        ModelError: If ``weight`` does not have ``len(source_bands)`` input channels or a
            band name is duplicated.
    """
    if weight.ndim != 4 or weight.shape[1] != len(source_bands):
        raise ModelError(
            f"{log_name} weight has shape {tuple(weight.shape)} but {len(source_bands)} source "
            f"bands were declared ({list(source_bands)})"
        )
    src = [normalize_band_name(b) for b in source_bands]
    tgt = [normalize_band_name(c) for c in target_channels]
    for kind, names in (("source", src), ("target", tgt)):
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ModelError(f"duplicated {kind} channel name(s) {dupes} in {list(names)}")
    w = weight.detach().float()
    mean_filter = w.mean(dim=1)
    out = torch.empty(w.shape[0], len(tgt), *w.shape[2:], dtype=w.dtype)
    index: list[int | None] = []
    for c, name in enumerate(tgt):
        i = src.index(name) if name in src else None
        out[:, c] = w[:, i] if i is not None else mean_filter
        index.append(i)
    scale = len(src) / len(tgt) if rescale else 1.0
    out *= scale
    mapping = BandMapping(tuple(target_channels), tuple(index), scale)
    logger.info("%s: %d -> %d channels: %s", log_name, len(src), len(tgt), mapping.describe(src))
    return out.to(weight.dtype), mapping


def default_channel_names(in_channels: int) -> list[str] | None:
    """Names assumed when none are given: RGB for 3 channels, unknown otherwise."""
    return list(RGB_BANDS) if in_channels == 3 else None
