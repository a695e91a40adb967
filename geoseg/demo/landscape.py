"""Seeded synthetic landscapes: land cover with coherent shapes, clouds, shadows, no-data edge.

Everything is evaluated per block of rows from a few small random fields, so a full
10980 × 10980 scene never needs more than a block of rows in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = ["Landscape", "SmoothField"]


class SmoothField:
    """Band-limited noise in [0, 1]-ish, defined by a small random grid, bilinearly upsampled."""

    def __init__(self, rng: np.random.Generator, size: int, scale: float, smooth: float = 1.5):
        n = int(np.ceil(size / scale)) + 3
        grid = ndimage.gaussian_filter(rng.standard_normal((n, n)), smooth, mode="wrap")
        self.grid = (grid - grid.mean()) / (grid.std() + 1e-9)
        self.scale = scale

    def rows(self, r0: int, r1: int, width: int) -> np.ndarray:
        """The field's values on rows ``r0:r1`` of a ``width``-wide grid (bilinear, wrapping)."""
        yy = (np.arange(r0, r1) + 0.5) / self.scale
        xx = (np.arange(width) + 0.5) / self.scale
        y, x = np.meshgrid(yy, xx, indexing="ij")
        return ndimage.map_coordinates(self.grid, [y, x], order=1, mode="nearest")

    def at(self, y: np.ndarray, x: np.ndarray, order: int = 1) -> np.ndarray:
        """Values on the grid of pixel coordinates ``y`` × ``x`` (1-D, may reach beyond the scene).

        ``order`` 3 (cubic) gives rounder shapes than the bilinear :meth:`rows`.
        """
        yy, xx = np.meshgrid(y / self.scale, x / self.scale, indexing="ij")
        return ndimage.map_coordinates(self.grid, [yy, xx], order=order, mode="nearest")

    def window(self, r0: int, r1: int, c0: int, c1: int, order: int = 1) -> np.ndarray:
        """Values of the pixels of rows ``r0:r1`` and columns ``c0:c1``."""
        return self.at(np.arange(r0, r1) + 0.5, np.arange(c0, c1) + 0.5, order)


@dataclass
class Landscape:
    """A seeded land-cover + atmosphere model of a ``size`` × ``size`` 10 m scene."""

    size: int
    seed: int = 0

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        n = self.size
        # Field parcels: Voronoi cells of jittered seeds (~70 px = 700 m apart).
        spacing = 70
        k = max(4, int((n / spacing) ** 2))
        self.parcel_xy = rng.uniform(0, n, size=(k, 2))
        self.parcel_tree = cKDTree(self.parcel_xy)
        self.parcel_class = rng.choice([3, 4, 6], size=k, p=[0.5, 0.35, 0.15])
        self.parcel_gain = rng.normal(1.0, 0.06, size=(k, 1)).clip(0.85, 1.15)
        self.forest = SmoothField(rng, n, scale=90)
        self.texture = SmoothField(rng, n, scale=6, smooth=1.0)
        self.lake = SmoothField(rng, n, scale=160)
        self.cloud = SmoothField(rng, n, scale=60)
        self.cirrus = SmoothField(rng, n, scale=120)
        # A river meandering from top to bottom.
        self.river_x0 = rng.uniform(0.3, 0.7) * n
        self.river_amp = rng.uniform(0.06, 0.12) * n
        self.river_wave = rng.uniform(0.5, 0.9) * n
        self.river_phase = rng.uniform(0, 2 * np.pi)
        # Towns: centres and radii.
        towns = max(2, n // 400)
        self.town_xy = rng.uniform(0.15 * n, 0.85 * n, size=(towns, 2))
        self.town_r = rng.uniform(0.04, 0.08, size=towns) * n
        self.shadow_shift = (int(0.02 * n) + 3, int(0.015 * n) + 2)  # rows, cols
        self.edge = (rng.uniform(0.12, 0.2) * n, rng.uniform(0.3, 0.5))  # no-data wedge

    def land_cover(self, r0: int, r1: int) -> np.ndarray:
        """Class codes (uint8) for rows r0..r1."""
        n = self.size
        y, x = np.mgrid[r0:r1, 0:n].astype(np.float32) + 0.5
        _, parcel = self.parcel_tree.query(np.column_stack([x.ravel(), y.ravel()]), workers=1)
        cover = self.parcel_class[parcel].reshape(y.shape).astype(np.uint8)
        cover[self.forest.rows(r0, r1, n) > 0.55] = 2
        for (tx, ty), tr in zip(self.town_xy, self.town_r, strict=True):
            wobble = 1 + 0.25 * self.texture.rows(r0, r1, n)
            cover[np.hypot(x - tx, y - ty) < tr * wobble] = 5
        river = self.river_x0 + self.river_amp * np.sin(2 * np.pi * y / self.river_wave + self.river_phase)
        width = 4 + 2 * np.sin(y / 37.0)
        cover[np.abs(x - river) < width] = 1
        cover[self.lake.rows(r0, r1, n) > 1.6] = 1
        return cover

    def parcel_gain_rows(self, r0: int, r1: int) -> np.ndarray:
        """Brightness gain of each pixel's field parcel for rows r0..r1."""
        n = self.size
        y, x = np.mgrid[r0:r1, 0:n].astype(np.float32) + 0.5
        _, parcel = self.parcel_tree.query(np.column_stack([x.ravel(), y.ravel()]), workers=1)
        return self.parcel_gain[parcel, 0].reshape(y.shape)

    def cloud_opacity(self, r0: int, r1: int) -> np.ndarray:
        """Cloud opacity in [0, 1] (≈10 % of the scene has thick clouds)."""
        field = self.cloud.rows(r0, r1, self.size)
        return np.clip((field - 1.1) / 0.6, 0, 1)

    def cirrus_opacity(self, r0: int, r1: int) -> np.ndarray:
        """Thin cirrus opacity in [0, 0.25] for rows r0..r1."""
        field = self.cirrus.rows(r0, r1, self.size)
        return np.clip((field - 1.3) / 2.0, 0, 0.25)

    def shadow(self, r0: int, r1: int) -> np.ndarray:
        """Cloud-shadow mask for rows r0..r1: thick clouds shifted by ``shadow_shift``."""
        dr, dc = self.shadow_shift
        lo = max(0, r0 - dr)
        opacity = self.cloud_opacity(lo, max(lo, r1 - dr)) if r1 - dr > 0 else np.zeros((0, self.size))
        out = np.zeros((r1 - r0, self.size), dtype=bool)
        if opacity.size:
            shifted = np.zeros_like(opacity, dtype=bool)
            shifted[:, dc:] = opacity[:, : self.size - dc] > 0.3
            out[r1 - r0 - shifted.shape[0] :] = shifted
        return out

    def nodata(self, r0: int, r1: int) -> np.ndarray:
        """The swath edge: a wedge in the lower-left corner without data."""
        width, _ = self.edge
        half = self.size / 2
        y, x = np.mgrid[r0:r1, 0 : self.size].astype(np.float32) + 0.5
        return x < width * (y - half) / half
