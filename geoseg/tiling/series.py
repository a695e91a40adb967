"""Multi-date CubeStores: cubes ``(N, T, C, H, W)``, each date read and masked as a single scene.

A dataset with ``time_steps`` (:mod:`geoseg.config.series`) is tiled by the same plan, tasks,
records and finalize as a single-date one; this module holds what differs:

- the worker reads every date of a window with :func:`~geoseg.features.read_features` (the
  single-date read, so date ``t`` of a cube equals the single-date cube of that acquisition bit
  for bit); a padded date is 0 in every channel and invalid everywhere;
- a cube's ``valid_fraction`` counts pixels valid on at least one date (those keep their
  label), and ``date_valid_fractions`` gives each date's own fraction;
- statistics are taken over valid (date, pixel) pairs;
- the manifest gains ``time_steps`` and ``series`` (what was chosen, per location); the index
  gains ``dates`` (a list per cube, null = padding), ``date_valid_fractions`` and
  ``padded_dates``.

Single-date stores have none of these keys, columns or axes (``time_steps`` absent).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from rasterio.windows import Window

from geoseg.features.recipes import Recipe

if TYPE_CHECKING:
    from geoseg.config.series import SceneSeries
    from geoseg.io.scene import Scene
    from geoseg.tiling.stats import ColumnMoments, Moments

__all__ = [
    "SERIES_CUBE_DIMS",
    "SERIES_INDEX_LISTS",
    "time_steps",
    "read_series",
    "merged_moments",
    "series_manifest",
    "series_columns",
]

SERIES_CUBE_DIMS = ("cube", "time", "channel", "y", "x")  # zarr dimension names of a multi-date ``cubes``
SERIES_INDEX_LISTS = ("dates", "date_valid_fractions")  # list columns of the index (JSON text in the GeoPackage)


def time_steps(manifest: dict) -> int | None:
    """``T`` of a multi-date store's manifest; None for a single-date store."""
    value = manifest.get("time_steps")
    return int(value) if value else None


def read_series(scenes: Sequence[Scene | None], window: Window, recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """Every date's features and valid mask of ``window``: ``(T, C, h, w)`` float32 and ``(T, h, w)`` bool.

    A date is read by :func:`~geoseg.features.read_features`, as a single scene; padding
    (``None``) is 0 in every channel and invalid everywhere.
    """
    from geoseg.features.stack import read_features

    h, w = int(window.height), int(window.width)
    features = np.zeros((len(scenes), recipe.num_channels, h, w), dtype=np.float32)
    valid = np.zeros((len(scenes), h, w), dtype=bool)
    for t, scene in enumerate(scenes):
        if scene is not None:
            features[t], valid[t] = read_features(scene, window, recipe)
    return features, valid


def merged_moments(columns: Sequence[ColumnMoments], cols: slice) -> Moments:
    """A cube's moments over its columns ``cols`` of every date (dates merged in order)."""
    return functools.reduce(lambda a, b: a.merge(b), (c.moments(cols) for c in columns))


def series_manifest(steps: int, rule: str, series: Sequence[SceneSeries]) -> dict[str, Any]:
    """The manifest entries of a multi-date store."""
    return {"time_steps": steps, "series": {"rule": rule, "locations": [s.record() for s in series]}}


def series_columns(series: SceneSeries, fractions: Sequence[float]) -> dict[str, Any]:
    """The index columns of one cube of ``series``: its dates (None = padding) and their valid fractions."""
    return {"dates": [d.acquired for d in series.dates], "date_valid_fractions": [float(f) for f in fractions],
            "padded_dates": series.padded}
