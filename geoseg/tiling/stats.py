"""Per-channel statistics over valid pixels, merged across cubes without a second pass.

Each cube contributes ``(count, mean, M2)`` in float64 (M2 = sum of squared deviations
from the cube's mean, see :func:`cube_moments`); partial results are merged with the parallel update of Chan, Golub
& LeVeque (1979), which stays accurate where the naive ``sum(x²) - n·mean²`` cancels.
Merging in a fixed order (cube order) makes the result independent of the worker count.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["Moments", "cube_moments", "ColumnMoments"]


@dataclass
class Moments:
    """Running count / mean / M2 of each channel (float64)."""

    count: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, channels: int) -> Moments:
        return cls(0, np.zeros(channels, np.float64), np.zeros(channels, np.float64))

    def merge(self, other: Moments) -> Moments:
        """Combine two disjoint samples (Chan et al.); returns a new object."""
        if other.count == 0:
            return Moments(self.count, self.mean.copy(), self.m2.copy())
        if self.count == 0:
            return Moments(other.count, other.mean.copy(), other.m2.copy())
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / n)
        return Moments(n, mean, m2)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (zeros when there are no pixels)."""
        if self.count == 0:
            return np.zeros_like(self.mean)
        return np.sqrt(self.m2 / self.count)

    def to_json(self) -> dict:
        return {"count": self.count, "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> Moments:
        return cls(int(data["count"]), np.asarray(data["mean"], np.float64), np.asarray(data["m2"], np.float64))


def cube_moments(cube: np.ndarray, valid: np.ndarray) -> Moments:
    """Moments of the valid pixels of a ``(C, h, w)`` float32 cube whose invalid pixels are 0.

    Two passes, no float64 copy of the cube: the float64 sum gives the mean (invalid pixels
    add 0); then deviations from the mean rounded to float32 are masked, squared and summed in
    float64, and the exact correction ``n·(mean − shift)²`` removes the rounding of the shift.
    """
    count = int(valid.sum())
    channels = cube.shape[0]
    if count == 0:
        return Moments.empty(channels)
    mean = cube.sum(axis=(1, 2), dtype=np.float64) / count
    shift = mean.astype(cube.dtype)
    dev = cube - shift[:, None, None]
    dev *= valid
    np.square(dev, out=dev)
    m2 = dev.sum(axis=(1, 2), dtype=np.float64) - count * (mean - shift.astype(np.float64)) ** 2
    return Moments(count, mean, np.maximum(m2, 0.0))


def _column_moments_numpy(features: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    count = valid.sum(axis=0)
    mean = features.sum(axis=1, dtype=np.float64) / np.maximum(count, 1)
    dev = (features - mean[:, None, :]) * valid
    return count, mean, np.einsum("cyx,cyx->cx", dev, dev)


@functools.cache
def _column_moments_kernel():
    """Compiled ``(features, valid) -> (count, mean, M2)`` per column, or None without numba."""
    try:
        import numba
    except ImportError:  # numba is a dependency; the numpy path keeps this usable without it
        return None

    @numba.njit(nogil=True, cache=True)
    def kernel(features, valid):  # pragma: no cover - compiled
        channels, height, width = features.shape
        weight = valid.astype(np.float64)
        count = np.zeros(width)
        for y in range(height):
            for x in range(width):
                count[x] += weight[y, x]
        mean = np.zeros((channels, width))
        m2 = np.zeros((channels, width))
        for c in range(channels):
            for y in range(height):  # invalid pixels are 0: the plain sum is the valid sum
                for x in range(width):
                    mean[c, x] += np.float64(features[c, y, x])
            for x in range(width):
                mean[c, x] /= max(count[x], 1.0)
            for y in range(height):
                for x in range(width):
                    d = (np.float64(features[c, y, x]) - mean[c, x]) * weight[y, x]
                    m2[c, x] += d * d
        return count.astype(np.int64), mean, m2

    return kernel


@dataclass
class ColumnMoments:
    """Exact two-pass moments of every column of a window; cubes merge their columns.

    A task reads one window spanning a run of cubes of one cube row, so each column of a cube
    is a column of the window with the same rows whatever the grouping. Per column and channel
    the valid count, mean and M2 are computed in float64 (two passes, in a compiled kernel);
    a cube's moments are its columns merged left to right with Chan et al. Every operation
    depends only on the cube's own pixels, in a fixed order, so statistics do not depend on
    how cubes are grouped into tasks or on the number of workers.
    """

    count: np.ndarray  # (W,) valid pixels per column
    mean: np.ndarray  # (C, W)
    m2: np.ndarray  # (C, W)

    @classmethod
    def of(cls, features: np.ndarray, valid: np.ndarray) -> ColumnMoments:
        kernel = _column_moments_kernel()
        if kernel is None:
            return cls(*_column_moments_numpy(features, valid))
        return cls(*kernel(features, valid))

    def moments(self, cols: slice) -> Moments:
        """Moments of the valid pixels in columns ``cols`` (all rows of the window)."""
        total = Moments.empty(self.mean.shape[0])
        for j in range(*cols.indices(self.count.shape[0])):
            total = total.merge(Moments(int(self.count[j]), self.mean[:, j], self.m2[:, j]))
        return total
