"""The feature stack: a scene's recipe channels + valid mask, window by window or lazily.

:func:`read_features` is *the* feature computation of geoseg; the tiler, the predictor and the
GeoTIFF writer all call it. :func:`feature_stack` wraps it in a dask-backed xarray Dataset on
the scene's 10 m grid, whose blocks are computed on demand (memory bounded by block size).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from rasterio.windows import Window

from geoseg.features.fused import compile_fused_kernel, fused_features
from geoseg.features.kernel import compile_recipe_kernel
from geoseg.features.options import DEFAULT_BLOCK, FeatureOptions
from geoseg.features.recipes import DEFAULT_RECIPE, Recipe, get_recipe
from geoseg.io.radiometry import dn_to_reflectance
from geoseg.io.reader import read_raw, read_sources, read_valid
from geoseg.io.scene import Scene

if TYPE_CHECKING:  # dask.array and xarray load in ~2 s: only feature_stack needs them
    import xarray as xr

__all__ = ["read_features", "features_from_dn", "feature_stack", "DEFAULT_BLOCK"]


def read_features(
    scene: Scene, window: Window, recipe: str | Recipe = DEFAULT_RECIPE
) -> tuple[np.ndarray, np.ndarray]:
    """Compute the recipe's channels for one window.

    With numba, one compiled pass (:mod:`geoseg.features.fused`) resamples, masks and computes
    the channels from the source blocks as read; without, numpy resamples and masks
    (:func:`geoseg.io.reader.read_raw`) before the index kernel or numpy formulas. Both give
    the same bits.

    Returns:
        ``(features, valid)``: float32 ``(C, h, w)`` with invalid pixels 0 in every channel,
        and the boolean ``(h, w)`` valid mask.
    """
    recipe = get_recipe(recipe)
    bands = recipe.required_bands
    scene.require_bands(bands, f"recipe {recipe.name}")
    kernel = compile_fused_kernel(recipe)
    if kernel is not None:
        return fused_features(kernel, read_sources(scene, window, bands), recipe, scene.offset.offset, scene.scale)
    raw, invalid = read_raw(scene, window, bands)
    valid = read_valid(scene, window, invalid)
    return features_from_dn(raw, valid, float(scene.offset.offset), float(scene.scale), recipe), valid


def features_from_dn(raw: np.ndarray, valid: np.ndarray, offset: float, scale: float,
                     recipe: str | Recipe = DEFAULT_RECIPE) -> np.ndarray:
    """The recipe's channels from DN already read: float32 ``(C, h, w)``, invalid pixels 0.

    Args:
        raw: DN of ``recipe.required_bands`` in that order, ``(len(bands), h, w)``.
        valid: boolean valid-pixel mask ``(h, w)``.
        offset, scale: reflectance = (DN + offset) / scale.
    """
    recipe = get_recipe(recipe)
    raw = np.ascontiguousarray(raw, dtype=np.float32)
    kernel = compile_recipe_kernel(recipe)
    if kernel is None:  # numpy path (numba not installed)
        reflectance = {b: dn_to_reflectance(raw[i], offset, scale) for i, b in enumerate(recipe.required_bands)}
        return recipe.compute(reflectance, valid)
    out = np.empty((recipe.num_channels, *valid.shape), dtype=np.float32)
    kernel(raw, float(offset), float(scale), np.ascontiguousarray(valid), out)  # the same formulas, compiled
    return out


def _block(scene: Scene, recipe: Recipe, block_info=None) -> np.ndarray:
    (r0, r1), (c0, c1) = block_info[None]["array-location"][1:]
    features, valid = read_features(scene, Window(c0, r0, c1 - c0, r1 - r0), recipe)
    return np.concatenate([features, valid[None].astype(np.float32)])


def feature_stack(
    scene: Scene, recipe: str | Recipe = DEFAULT_RECIPE, block: int = DEFAULT_BLOCK
) -> xr.Dataset:
    """A lazy Dataset with ``features`` (band, y, x) float32 and ``valid`` (y, x) bool.

    Coordinates are pixel centres in the scene CRS; ``attrs`` hold the CRS (WKT), the affine
    transform, the recipe and the scene id. Nothing is read until a block is computed.
    """
    FeatureOptions(block=block)  # a bad block size is a one-line ConfigError naming it
    import dask.array as da
    import xarray as xr

    recipe = get_recipe(recipe)
    scene.require_bands(recipe.required_bands, f"recipe {recipe.name}")
    height, width = scene.grid.shape
    channels = recipe.num_channels
    chunks = ((channels + 1,), _chunks(height, block), _chunks(width, block))
    both = da.map_blocks(
        _block, scene, recipe, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32),
        name=f"geoseg-features-{scene.scene_id}-{recipe.name}-{block}-{dask_token(scene)}",
    )
    aff = scene.grid.affine
    ys = aff.f + aff.e * (np.arange(height) + 0.5)
    xs = aff.c + aff.a * (np.arange(width) + 0.5)
    attrs = {
        "crs": scene.grid.crs_wkt,
        "transform": list(scene.grid.transform),
        "recipe": recipe.name,
        "scene_id": scene.scene_id,
        "offset": scene.offset.offset,
        "scale": scene.scale,
    }
    return xr.Dataset(
        {
            "features": (("band", "y", "x"), both[:channels]),
            "valid": (("y", "x"), both[channels] > 0),
        },
        coords={"band": list(recipe.channel_names), "y": ys, "x": xs},
        attrs=attrs,
    )


def _chunks(size: int, block: int) -> tuple[int, ...]:
    full, rest = divmod(size, block)
    return (block,) * full + ((rest,) if rest else ())


def dask_token(scene: Scene) -> str:
    from dask.base import tokenize

    return tokenize(scene.path, scene.grid, scene.offset, scene.scale, scene.invalid_scl, scene.mask)
