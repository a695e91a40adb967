"""Digital numbers to reflectance: the one definition of the formula and of invalid pixels.

``reflectance = (DN + offset) / scale`` in float64, where the offset comes from
:mod:`geoseg.io.offsets` (0 or -1000 for Sentinel-2) and the scale is DN per unit reflectance
(10000 for Sentinel-2 digital numbers). Nothing is clipped: a dark pixel of an offset product
may have a slightly negative reflectance, and it is kept as is.

Nodata is not a reflectance value: a pixel is *invalid* when a band it uses holds nodata or
a non-finite value, when its SCL class is excluded, or when the external mask says so (see
:func:`geoseg.io.reader.read_window`), and every output channel of an invalid pixel is
:data:`INVALID_FILL`.

Both feature paths use these definitions: the numpy path (:meth:`Recipe.compute
<geoseg.features.recipes.Recipe.compute>` via :func:`geoseg.io.reader.read_reflectance`)
calls :func:`dn_to_reflectance` on whole arrays, and the numba kernel of
:mod:`geoseg.features.kernel` compiles the same function (its source, verbatim) for single
pixels, so both give the same bits.
"""

from __future__ import annotations

import numpy as np

__all__ = ["INVALID_FILL", "dn_to_reflectance"]

INVALID_FILL = 0.0  # the value of every channel at an invalid pixel


def dn_to_reflectance(dn, offset, scale):
    """Reflectance ``(DN + offset) / scale`` in float64, of an array or (compiled by numba) one pixel.

    ``dn`` may be integer or floating point (resampled bands are float32); it is widened to
    float64 before the offset is added, so the result does not depend on the file's dtype.
    """
    return (np.float64(dn) + np.float64(offset)) / np.float64(scale)
