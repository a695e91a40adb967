"""Per-channel statistics over valid pixels, merged across cubes without a second pass.

Each cube contributes ``(count, mean, M2)`` in float64 (M2 = sum of squared deviations
from the cube's mean, see :func:`cube_moments`); partial results are merged with the parallel update of Chan, Golub
& LeVeque (1979), which stays accurate where the naive ``sum(x²) - n·mean²`` cancels.
Merging in a fixed order (cube order) makes the result independent of the worker count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Moments", "cube_moments"]


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
