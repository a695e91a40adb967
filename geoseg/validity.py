"""The invalid-pixel rule, defined once: a pixel is invalid when its mask channels are all 0.

Every feature stack (:meth:`geoseg.features.Recipe.compute`) writes invalid pixels as 0 in
every channel, and its leading ``Recipe.num_mask_channels`` channels (the reflectances) are
never all 0 at a valid pixel. Whoever has to tell valid from invalid pixels afterwards — the
bundle's normalisation, masked BatchNorm, the ONNX graph and its reference — calls
:func:`valid_mask` (torch tensors) or its twin :func:`valid_mask_numpy` (numpy arrays).

This module sits at the bottom of the layers (beside :mod:`geoseg.errors`) and imports
nothing, so that ``geoseg.models`` (lowest layer) and ``geoseg.bundle`` both use it without
an import between them. The number of mask channels comes from the recipe
(``Recipe.num_mask_channels``); :data:`DEFAULT_MASK_CHANNELS` is that number for the
default recipe ``s2_24`` (checked by a test), the default of models built without a recipe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

__all__ = ["DEFAULT_MASK_CHANNELS", "valid_mask", "valid_mask_numpy"]

DEFAULT_MASK_CHANNELS = 11  # = get_recipe("s2_24").num_mask_channels (its 11 reflectance bands)


def valid_mask(x: Tensor, mask_channels: int = DEFAULT_MASK_CHANNELS, channel_dim: int = 1,
               tolerance: float = 0.0) -> Tensor:
    """Boolean mask of valid pixels: ``sum(|x|)`` over the leading mask channels ``> tolerance``.

    Args:
        x: Features, e.g. ``(N, C, H, W)`` (``channel_dim=1``) or ``(C, H, W)`` (``channel_dim=0``).
        mask_channels: Leading channels that decide validity (all of them if ``x`` has fewer).
        channel_dim: The channel dimension of ``x``.
        tolerance: 0 for raw features (invalid pixels are exactly 0). Only values
            reconstructed in floating point (the ONNX graph undoes a standardisation) need
            a small positive tolerance.

    Returns:
        A bool tensor shaped like ``x`` with the channel dimension of size 1.
    """
    k = min(mask_channels, x.shape[channel_dim])
    return x.narrow(channel_dim, 0, k).abs().sum(dim=channel_dim, keepdim=True) > tolerance


def valid_mask_numpy(x: np.ndarray, mask_channels: int = DEFAULT_MASK_CHANNELS, channel_dim: int = 1,
                     tolerance: float = 0.0) -> np.ndarray:
    """:func:`valid_mask` for a numpy array (same arguments, same result as a bool array)."""
    dim = channel_dim % x.ndim
    k = min(mask_channels, x.shape[dim])
    return abs(x[(slice(None),) * dim + (slice(0, k),)]).sum(axis=dim, keepdims=True) > tolerance
