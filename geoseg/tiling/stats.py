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
        """Moments of no sample (count 0) for ``channels`` channels."""
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
        """JSON-serialisable form (read back by :meth:`from_json`)."""
        return {"count": self.count, "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> Moments:
        """Read :meth:`to_json`'s form."""
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
    """Compiled ``(features, valid) -> (count, mean, M2)`` per column and the column merge."""
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

    @numba.njit(nogil=True, cache=True)
    def merge(count, mean, m2, c0, c1):  # pragma: no cover - compiled
        channels = mean.shape[0]
        n = 0.0
        for j in range(c0, c1):
            n += count[j]
        total_mean = np.zeros(channels)
        total_m2 = np.zeros(channels)
        if n == 0:
            return 0, total_mean, total_m2
        for c in range(channels):
            acc = 0.0
            for j in range(c0, c1):
                acc += count[j] * mean[c, j]
            total_mean[c] = acc / n
            acc = 0.0
            for j in range(c0, c1):
                d = mean[c, j] - total_mean[c]
                acc += m2[c, j] + count[j] * d * d
            total_m2[c] = acc
        return int(n), total_mean, total_m2

    return kernel, merge


def _merge_columns_numpy(count, mean, m2, c0: int, c1: int):
    """Sequential sums (cumsum, not pairwise): the same order wherever the columns sit."""
    n = int(count[c0:c1].sum())
    if n == 0:
        return 0, np.zeros(mean.shape[0]), np.zeros(mean.shape[0])
    weights = count[c0:c1].astype(np.float64)
    total_mean = np.cumsum(weights * mean[:, c0:c1], axis=1)[:, -1] / n
    dev = mean[:, c0:c1] - total_mean[:, None]
    return n, total_mean, np.cumsum(m2[:, c0:c1] + weights * dev * dev, axis=1)[:, -1]


@dataclass
class ColumnMoments:
    """Exact two-pass moments of every column of a window; cubes merge their columns.

    A task reads one window spanning a run of cubes of one cube row, so each column of a cube
    is a column of the window with the same rows whatever the grouping. Per column and channel
    the valid count, mean and M2 are computed in float64 (two passes, in a compiled kernel);
    a cube's moments combine its columns exactly (see :meth:`moments`). Every operation
    depends only on the cube's own pixels, in a fixed order, so statistics do not depend on
    how cubes are grouped into tasks or on the number of workers.
    """

    count: np.ndarray  # (W,) valid pixels per column
    mean: np.ndarray  # (C, W)
    m2: np.ndarray  # (C, W)

    @classmethod
    def of(cls, features: np.ndarray, valid: np.ndarray) -> ColumnMoments:
        """Per-column moments of the valid pixels of ``features`` (C, h, w)."""
        compiled = _column_moments_kernel()
        if compiled is None:
            return cls(*_column_moments_numpy(features, valid))
        return cls(*compiled[0](features, valid))

    def moments(self, cols: slice) -> Moments:
        """Moments of the valid pixels in columns ``cols`` (all rows of the window).

        ``n = Σ n_j``, ``mean = Σ n_j·mean_j / n``, ``M2 = Σ (M2_j + n_j·(mean_j − mean)²)``:
        the exact combination of disjoint samples, summed column by column in order.
        """
        c0, c1, _ = cols.indices(self.count.shape[0])
        compiled = _column_moments_kernel()
        merge = _merge_columns_numpy if compiled is None else compiled[1]
        n, mean, m2 = merge(self.count, self.mean, self.m2, c0, c1)
        return Moments(int(n), np.asarray(mean), np.asarray(m2))
