"""Band-aware first convolution: map pretrained input filters onto named input channels.

Pretrained weights declare the bands they were trained on (ImageNet RGB = ``B04, B03, B02``
in Sentinel-2 names; torchgeo weights list theirs in ``weights.meta["bands"]``). Each target
channel whose (normalised) name is among the source bands receives that band's filter.
Every other channel receives the mean of all source filters. The whole kernel is then
scaled by ``n_source / n_target`` so that, for inputs of similar magnitude in every channel,
the expected pre-activation stays what the pretrained network saw (the rule timm's
``adapt_input_conv`` uses, 3 / in_chans for RGB). The mapping is logged at INFO level.
Channels are matched by name only — never by position. A date-prefixed channel name
(``"t2:B04"``, the dates-as-channels input of a time series) matches its band (``B04``): every
date's B04 channel gets the red filter, and the scale counts every date's channels.

Channels without names (a model of 24 unnamed channels given RGB weights) get smp's rule
instead, :func:`cycle_first_conv_weight`: channel i takes source filter i mod n, scaled
n / in_channels, logged as a one-line warning, since that mapping knows no bands.

:func:`set_module_in_channels` does to a whole encoder module what smp's
``EncoderMixin.set_in_channels`` does (the first ``Conv2d`` taking the module's native channels
gets the new channel count; ``_in_channels`` and ``_out_channels[0]`` follow), with the kernel
adapted by name, or cycled as smp does when the channels have no names.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from geoseg.errors import ModelError

__all__ = [
    "RGB_BANDS",
    "BandMapping",
    "normalize_band_name",
    "band_of",
    "date_channel_names",
    "adapt_first_conv_weight",
    "cycle_first_conv_weight",
    "set_module_in_channels",
]

logger = logging.getLogger(__name__)

#: ImageNet RGB order expressed as Sentinel-2 bands (red, green, blue).
RGB_BANDS: tuple[str, str, str] = ("B04", "B03", "B02")

_ALIASES = {"RED": "B04", "GREEN": "B03", "BLUE": "B02", "NIR": "B08", "R": "B04", "G": "B03"}
_BAND_RE = re.compile(r"^B0*(\d{1,2})(A?)$")
_DATE_RE = re.compile(r"^t(\d+):(.+)$", re.IGNORECASE)


def date_channel_names(names: Sequence[str], time_steps: int) -> list[str]:
    """Names of the ``time_steps * len(names)`` channels of a series stacked date by date.

    >>> date_channel_names(["B04", "NDVI"], 2)
    ['t0:B04', 't0:NDVI', 't1:B04', 't1:NDVI']
    """
    return [f"t{t}:{name}" for t in range(time_steps) for name in names]


def normalize_band_name(name: str) -> str:
    """Canonical Sentinel-2 spelling: ``"b4"``, ``"B4"``, ``"red"`` → ``"B04"``; ``"b8a"`` → ``"B8A"``.

    Names that are not Sentinel-2 bands (``"NDVI"``, ``"VV"``) are returned upper-cased; a
    date prefix is kept (``"T1:b4"`` → ``"t1:B04"``).
    """
    dated = _DATE_RE.match(name.strip())
    if dated is not None:
        return f"t{int(dated.group(1))}:{normalize_band_name(dated.group(2))}"
    key = name.strip().upper()
    key = _ALIASES.get(key, key)
    match = _BAND_RE.match(key)
    if match is None:
        return key
    number, suffix = match.groups()
    return f"B{int(number)}A" if suffix else f"B{int(number):02d}"


def band_of(name: str) -> str:
    """The normalised band of a channel name, without its date prefix (``"t1:b4"`` → ``"B04"``)."""
    normalized = normalize_band_name(name)
    dated = _DATE_RE.match(normalized)
    return normalized if dated is None else dated.group(2)


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
        band = band_of(name)
        i = src.index(band) if band in src else None
        out[:, c] = w[:, i] if i is not None else mean_filter
        index.append(i)
    scale = len(src) / len(tgt) if rescale else 1.0
    out *= scale
    mapping = BandMapping(tuple(target_channels), tuple(index), scale)
    logger.info("%s: %d -> %d channels: %s", log_name, len(src), len(tgt), mapping.describe(src))
    return out.to(weight.dtype), mapping


def cycle_first_conv_weight(weight: Tensor, in_channels: int, *, log_name: str = "first conv") -> Tensor:
    """smp's ``set_in_channels`` kernel for unnamed channels: the pretrained filters cycled over them.

    Channel i takes source filter ``i mod n`` and the kernel is scaled by ``n / in_channels``
    (one channel: the sum of the filters), as smp's ``patch_first_conv`` does. The mapping
    ignores what the channels hold, so it is logged as a warning naming the band-aware way.

    Args:
        weight: Pretrained kernel (out, n, kh, kw).
        in_channels: Input channels of the new model.
        log_name: Layer name used in the log message.

    Returns:
        The new kernel (out, in_channels, kh, kw).
    """
    n = int(weight.shape[1])
    w = weight.detach()
    out = w.sum(dim=1, keepdim=True) if in_channels == 1 else w[:, [i % n for i in range(in_channels)]] * (n / in_channels)
    logger.warning("%s: %d pretrained input filters cycled over %d unnamed channels (smp's set_in_channels), "
                   "not band-aware: pass channel_names to map the bands by name", log_name, n, in_channels)
    return out.contiguous()


def default_channel_names(in_channels: int) -> list[str] | None:
    """Names assumed when none are given: RGB for 3 channels, unknown otherwise."""
    return list(RGB_BANDS) if in_channels == 3 else None


def set_module_in_channels(
    module: nn.Module,
    native: int,
    in_channels: int,
    *,
    source_bands: Sequence[str] | None = None,
    target_channels: Sequence[str] | None = None,
    log_name: str = "encoder",
) -> BandMapping | None:
    """Change an encoder's input channels, as smp's ``EncoderMixin.set_in_channels`` does.

    The first ``nn.Conv2d`` of ``module`` that takes ``native`` input channels is the first
    convolution (smp's ``patch_first_conv`` rule). Its kernel is rebuilt for ``in_channels``:
    without ``source_bands`` (random weights) it is freshly initialised, as smp does with
    ``pretrained=False``; with them (pretrained weights already loaded) it is adapted band by
    band with :func:`adapt_first_conv_weight`, or, without ``target_channels``, cycled as smp
    does (:func:`cycle_first_conv_weight`). smp's bookkeeping attributes follow:
    ``_in_channels`` becomes ``in_channels`` and ``_out_channels[0]`` too when it was ``native``.

    Args:
        module: The encoder module (any ``nn.Module``; smp's ``EncoderMixin`` is not required).
        native: Input channels the module was built for.
        in_channels: Input channels wanted.
        source_bands: Band of each of the ``native`` channels of the loaded weights, or None.
        target_channels: Name of each of the ``in_channels`` channels (None: unnamed, smp's cycling).
        log_name: Name used in log messages.

    Returns:
        The band mapping applied, or None (freshly initialised, or cycled over unnamed channels).

    Raises:
        ModelError: No convolution takes ``native`` channels, it is grouped, or the names do not
            match ``in_channels``.
    """
    conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d) and m.in_channels == native), None)
    if conv is None:
        raise ModelError(f"{log_name}: no Conv2d takes its {native} input channels; cannot set "
                         f"in_channels={in_channels}", hint="build the encoder for the input channels")
    if conv.groups != 1:
        raise ModelError(f"{log_name}: its first convolution is grouped ({conv.groups} groups); "
                         f"cannot set in_channels={in_channels}")
    mapping = None
    if source_bands is None:
        weight = torch.empty(conv.out_channels, in_channels, *conv.kernel_size,
                             dtype=conv.weight.dtype, device=conv.weight.device)
        logger.info("%s: first conv %d -> %d channels, freshly initialised", log_name, native, in_channels)
    elif target_channels is None:
        weight = cycle_first_conv_weight(conv.weight, in_channels, log_name=f"{log_name} first conv")
    elif len(target_channels) != in_channels:
        raise ModelError(f"{log_name}: {len(target_channels)} channel_names for {in_channels} input channels",
                         hint="give one name per input channel")
    else:
        weight, mapping = adapt_first_conv_weight(conv.weight, source_bands, target_channels,
                                                  log_name=f"{log_name} first conv")
    conv.in_channels = in_channels
    conv.weight = nn.Parameter(weight)
    if source_bands is None:
        conv.reset_parameters()
    smp_attrs = cast(Any, module)  # smp's plain int / list attributes, not parameters
    if hasattr(module, "_in_channels"):
        smp_attrs._in_channels = in_channels
    out = getattr(module, "_out_channels", None)
    if isinstance(out, list | tuple) and out and out[0] == native:
        smp_attrs._out_channels = [in_channels, *list(out)[1:]]
    return mapping
