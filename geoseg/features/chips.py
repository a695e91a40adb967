"""Chips: small image files of Sentinel-2 bands (or of computed features), read whole.

A chip is a raster (GeoTIFF, ...) or a numpy array (``.npy``, ``.npz``) holding either the
Sentinel-2 bands of one small area — 13 L1C or 12 L2A bands in ESA order, or bands named by
the raster's band descriptions — or the recipe's channels already computed. :func:`read_chip`
gives the recipe's channels and the valid mask as the tiler computes them:

- a **georeferenced raster of bands** is opened as a scene (:func:`geoseg.io.open_scene`: the
  offset from its metadata or inferred, the scale checked) and read with
  :func:`~geoseg.features.read_features` — the tiler's and the predictor's code;
- **bands without georeferencing** (an array, or a raster without CRS) go through the same
  steps on the array: invalid where a used band is 0 (Sentinel-2 nodata) or not finite, the
  offset inferred and the scale checked as for a scene file without metadata, then
  :func:`~geoseg.features.stack.features_from_dn`;
- a chip with **the recipe's channel count** (which is not a band count: 24 for ``s2_24``), or a
  raster whose band descriptions are the recipe's channel names, is taken as computed features;
  its valid pixels are those whose mask channels are not all 0 (:mod:`geoseg.validity`).

Arrays may be ``(C, H, W)`` or ``(H, W, C)``; an ``.npz`` holds the chip under ``image`` (or
as its only array).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from rasterio.windows import Window

from geoseg.errors import BandError, CorruptRasterError, MissingFileError
from geoseg.features.recipes import DEFAULT_RECIPE, Recipe, get_recipe
from geoseg.features.stack import features_from_dn, read_features
from geoseg.io.grid import Grid
from geoseg.io.offsets import check_scale, infer_offset
from geoseg.io.raster import open_raster
from geoseg.io.scene import open_scene
from geoseg.io.sensors import (
    REFLECTANCE_SCALE,
    S2_BAND_NAMES,
    S2_L2A_BAND_NAMES,
    S2_NODATA,
    normalise_band_name,
)
from geoseg.validity import valid_mask_numpy

__all__ = ["Chip", "ARRAY_SUFFIXES", "CHIP_SUFFIXES", "read_chip", "chip_shape", "load_array"]

ARRAY_SUFFIXES = (".npy", ".npz")
CHIP_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", *ARRAY_SUFFIXES)
_BAND_ORDERS = {len(S2_BAND_NAMES): S2_BAND_NAMES, len(S2_L2A_BAND_NAMES): S2_L2A_BAND_NAMES}


@dataclass(frozen=True)
class Chip:
    """One chip's recipe channels.

    Attributes:
        features: float32 ``(C, H, W)``, every channel 0 at invalid pixels.
        valid: bool ``(H, W)``.
        grid: the chip's grid when it is georeferenced (a raster with a projected CRS), else None.
        kind: ``bands`` (computed here) or ``features`` (taken as they are).
        level: ``L1C``, ``L2A`` or ``unknown`` (from the metadata or the band count).
        offset: the DN offset applied (None for features).
        offset_rule: how it was decided: ``metadata``, ``catalog`` (given), ``inferred``, ``none``.
        scale: DN per unit reflectance.
    """

    features: np.ndarray
    valid: np.ndarray
    grid: Grid | None
    kind: Literal["bands", "features"]
    level: str = "unknown"
    offset: float | None = None
    offset_rule: str = "none"
    scale: float = REFLECTANCE_SCALE


def load_array(path: str | Path, key: str = "image") -> np.ndarray:
    """The array of a ``.npy`` file, or of an ``.npz`` (``key``, or its only array).

    Raises:
        MissingFileError: no such file.
        CorruptRasterError: the file is not a readable numpy array.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError("file does not exist", path=path, hint="check the file name (and the CSV listing it)")
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as data:
                names = list(data.files)
                name = key if key in names else (names[0] if len(names) == 1 else None)
                if name is None:
                    raise CorruptRasterError(f"the .npz holds {len(names)} arrays ({', '.join(names[:5])}) and none "
                                             f"named {key!r}", path=path, hint=f"store the chip as {key!r}")
                return np.asarray(data[name])
        return np.load(path, allow_pickle=False)
    except CorruptRasterError:
        raise
    except (OSError, ValueError, EOFError) as err:
        why = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise CorruptRasterError(f"not a readable numpy array ({why})", path=path,
                                 hint="re-export the chip with numpy.save") from None


def _channels_first(arr: np.ndarray, path: Path, counts: set[int]) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[0] not in counts and arr.shape[-1] in counts:
        arr = np.moveaxis(arr, -1, 0)
    if arr.ndim != 3 or arr.shape[0] not in counts:
        raise BandError(f"a chip array of shape {arr.shape}", path=path,
                        hint=f"chips hold (C, H, W) or (H, W, C) with C = {', '.join(map(str, sorted(counts)))} "
                             "(13 L1C or 12 L2A Sentinel-2 bands in ESA order, or the recipe's channels)")
    return arr


def _counts(recipe: Recipe) -> set[int]:
    return {*_BAND_ORDERS, recipe.num_channels}


def _is_features(count: int, recipe: Recipe, names: list[str | None] | None = None) -> bool:
    if names is not None and all(names) and [n.upper() for n in names if n] == [c.upper() for c in recipe.channel_names]:
        return True
    return count == recipe.num_channels and count not in _BAND_ORDERS


def chip_shape(path: str | Path, recipe: str | Recipe = DEFAULT_RECIPE) -> tuple[int, int]:
    """``(H, W)`` of a chip, from its header (rasters) or a memory map (arrays)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            why = (str(err).splitlines() or [type(err).__name__])[0][:120]
            raise CorruptRasterError(f"not a readable numpy array ({why})", path=path,
                                     hint="re-export the chip with numpy.save") from None
        shape = _channels_first(arr, path, _counts(get_recipe(recipe))).shape
        return int(shape[1]), int(shape[2])
    if path.suffix.lower() == ".npz":
        shape = _channels_first(load_array(path), path, _counts(get_recipe(recipe))).shape
        return int(shape[1]), int(shape[2])
    with open_raster(path) as ds:
        return int(ds.height), int(ds.width)


def _features_array(arr: np.ndarray, recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    features = np.ascontiguousarray(arr, dtype=np.float32)
    features = np.where(np.isfinite(features), features, np.float32(0))
    valid = valid_mask_numpy(features, recipe.num_mask_channels, channel_dim=0)[0]
    features[:, ~valid] = 0  # the invalid-pixel rule: 0 in every channel
    return features, valid


def _bands_array(arr: np.ndarray, names: list[str], recipe: Recipe, path: Path, scale: float | None,
                 offset: float | None, grid: Grid | None = None) -> Chip:
    missing = [b for b in recipe.required_bands if b not in names]
    if missing:
        raise BandError(f"chip has no band {', '.join(missing)} (found {', '.join(names)})", path=path,
                        hint=f"recipe {recipe.name} needs {', '.join(recipe.required_bands)}")
    scale = REFLECTANCE_SCALE if scale is None else float(scale)
    dn = arr.astype(np.float64)
    samples = {name: dn[i] for i, name in enumerate(names)}
    rule = "catalog"
    if offset is None:
        offset, rule = infer_offset(samples, nodata=S2_NODATA, scale=scale).offset, "inferred"  # as for a scene file
    check_scale(samples, float(offset), scale, S2_NODATA, str(path))
    raw = np.stack([arr[names.index(b)] for b in recipe.required_bands]).astype(np.float32)
    valid = ~((raw == S2_NODATA) | ~np.isfinite(raw)).any(axis=0)
    level = "L1C" if "B10" in names else ("L2A" if len(names) == len(S2_L2A_BAND_NAMES) else "unknown")
    return Chip(features_from_dn(raw, valid, float(offset), scale, recipe), valid, grid, "bands", level,
                float(offset), rule, scale)


def read_chip(path: str | Path, recipe: str | Recipe = DEFAULT_RECIPE, *, scale: float | None = None,
              offset: float | None = None) -> Chip:
    """The recipe's channels of the chip at ``path`` (rules in the module docstring).

    Args:
        path: a raster or a ``.npy``/``.npz`` array.
        recipe: the feature recipe (a model's or a dataset's).
        scale: DN per unit reflectance (default 10000, Sentinel-2 digital numbers).
        offset: DN offset (default: from the raster's metadata, else inferred from the values).

    Raises:
        MissingFileError, CorruptRasterError, BandError, CRSMismatchError, ScaleError.
    """
    recipe = get_recipe(recipe)
    path = Path(path)
    if path.suffix.lower() in ARRAY_SUFFIXES:
        arr = _channels_first(load_array(path), path, _counts(recipe))
        if _is_features(arr.shape[0], recipe):
            return Chip(*_features_array(arr, recipe), None, "features")
        return _bands_array(arr, list(_BAND_ORDERS[arr.shape[0]]), recipe, path, scale, offset)
    with open_raster(path) as ds:
        descriptions = [normalise_band_name(d) if d else None for d in ds.descriptions]
        raw_names = list(ds.descriptions)
        count, crs = ds.count, ds.crs
        grid = Grid.from_dataset(ds) if crs else None
        as_features = _is_features(count, recipe, raw_names)
        data = ds.read() if as_features or not crs else None
    if as_features:
        assert data is not None
        return Chip(*_features_array(data, recipe), grid if grid is not None and not grid.crs.is_geographic else None,
                    "features")
    if crs:  # georeferenced bands: a scene, read by the tiler's code
        scene = open_scene(path, scale=scale, offset=offset)
        features, valid = read_features(scene, Window(0, 0, scene.grid.width, scene.grid.height), recipe)
        return Chip(features, valid, scene.grid, "bands", scene.level, scene.offset.offset, scene.offset.source,
                    scene.scale)
    assert data is not None
    if all(descriptions):
        names = [d for d in descriptions if d]
    elif count in _BAND_ORDERS:
        names = list(_BAND_ORDERS[count])
    else:
        raise BandError(f"{count} bands without band descriptions", path=path,
                        hint="chips hold 13 L1C or 12 L2A Sentinel-2 bands in ESA order, bands named B01..B12 "
                             f"in their descriptions, or the recipe's {recipe.num_channels} channels")
    return _bands_array(data, names, recipe, path, scale, offset)
