"""Digital numbers to reflectance: the one definition of the formula and of invalid pixels.

``reflectance = (DN + offset) / scale`` in float64, where the offset comes from
:mod:`geoseg.io.offsets` (0 or -1000 for Sentinel-2) and the scale is DN per unit reflectance
(10000 for Sentinel-2 digital numbers). Nothing is clipped: a dark pixel of an offset product
may have a slightly negative reflectance, and it is kept as is.

Nodata is not a reflectance value: a pixel is *invalid* when a band it uses holds nodata or
a non-finite value, when its SCL class is excluded, or when the external mask says so (see
:func:`geoseg.io.reader.read_window`), and every output channel of an invalid pixel is
:data:`INVALID_FILL`.

Every feature path uses these definitions: the numpy path (:meth:`Recipe.compute
<geoseg.features.recipes.Recipe.compute>` via :func:`geoseg.io.reader.read_reflectance`)
calls :func:`dn_to_reflectance` on whole arrays, the numba kernel of
:mod:`geoseg.features.kernel` compiles the same function (its source, verbatim) for single
pixels, and the batch transform of compact stores (:mod:`geoseg.features.torch_features`)
calls its torch twin :func:`dn_to_reflectance_torch`, so all three give the same bits.
Scene statistics (:mod:`geoseg.io.summary`) count reflectance in units of 1e-4 with
:func:`dn_to_reflectance_units`. Nowhere else in geoseg is DN turned into reflectance
(``tests/foundation/test_radiometry.py`` checks it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["INVALID_FILL", "dn_to_reflectance", "dn_to_reflectance_torch", "dn_to_reflectance_units"]

INVALID_FILL = 0.0  # the value of every channel at an invalid pixel


def dn_to_reflectance(dn, offset, scale):
    """Reflectance ``(DN + offset) / scale`` in float64, of an array or (compiled by numba) one pixel.

    ``dn`` may be integer or floating point (resampled bands are float32); it is widened to
    float64 before the offset is added, so the result does not depend on the file's dtype.
    """
    return (np.float64(dn) + np.float64(offset)) / np.float64(scale)


def dn_to_reflectance_torch(dn: torch.Tensor, offset: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """:func:`dn_to_reflectance` of a tensor: ``(DN + offset) / scale`` in float64, on ``dn``'s device.

    ``offset`` and ``scale`` are float64 tensors broadcastable to ``dn`` (one pair per cube of a
    batch); the same two IEEE-754 operations in float64 give the numpy path's bits.
    """
    return (dn.double() + offset) / scale


def dn_to_reflectance_units(dn: np.ndarray, offset: float, scale: float, per_unit: float) -> np.ndarray:
    """Reflectance in units of ``1 / per_unit``: ``(DN + offset) * (per_unit / scale)`` in float64.

    The factor is applied once, so with ``per_unit == scale`` (Sentinel-2 DN counted in 1e-4
    reflectance) an integer DN stays an exact integer, which a histogram with one bin per DN
    needs; :func:`dn_to_reflectance` followed by ``* per_unit`` could land just below it.
    """
    return (dn.astype(np.float64) + float(offset)) * (float(per_unit) / float(scale))
