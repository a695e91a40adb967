"""Clouds, cirrus and cloud shadows of each acquisition of a demo season.

Each date has its own seeded cloud and cirrus fields and its own cover (a target of 4–12 %
thick cloud, formed away from earlier dates' clouds, and 0–6 % cirrus thick enough to be
flagged), so every date has some cloud and no two dates have it in the same places. A pixel
is *obscured* on a date when cloud, flagged cirrus or a cloud shadow covers its 20 m SCL pixel.
No pixel is under thick cloud on two dates, nor obscured on more than ``max_obscured`` dates
(fewer than half): a date's clouds (and the shadows they would cast) give way where an earlier
date had thick cloud or already obscured the pixel that often, so later dates may keep less
than their target. Everything is a function of the position, evaluated per block of rows, so
blocks agree at their edges.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from geoseg.demo.landscape import Landscape, SmoothField

__all__ = ["SeasonSky", "Sky"]

Sky = tuple[np.ndarray, np.ndarray, np.ndarray]  # cloud opacity, cirrus opacity, shadow (rows, cols)
_THICK, _FLAGGED = 0.3, 0.12  # opacity of a cloud (SCL 8/9) and of a cirrus SCL flags (10)
_ORDER = 3  # cubic: round clouds
_CLOUD_RAMP, _CIRRUS_RAMP = 0.1, 0.5  # field range over which opacity rises by 1: thin haze stays a narrow rim


def _threshold(field: SmoothField, size: int, share: float) -> float:
    """The field value exceeded on ``share`` of the scene (from a 64 × 64 sample)."""
    points = (np.arange(64) + 0.5) * size / 64
    return float(np.quantile(field.at(points, points, _ORDER), 1 - share))


def _any_2x2(mask: np.ndarray, row0: int, col0: int) -> np.ndarray:
    """Whether any pixel of each pixel's 2 × 2 block is set (blocks of the 20 m grid; ``row0``,
    ``col0``: the scene coordinates of ``mask[0, 0]``) — SCL flags whole 20 m pixels."""
    h, w = mask.shape
    top, left = row0 % 2, col0 % 2
    padded = np.pad(mask, ((top, (top + h) % 2), (left, (left + w) % 2)))
    blocks = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2).any(axis=(1, 3))
    return blocks.repeat(2, axis=0).repeat(2, axis=1)[top : top + h, left : left + w]


class SeasonSky:
    """The atmosphere of ``dates`` acquisitions over ``land``'s grid."""

    def __init__(self, land: Landscape, dates: int, seed: int):
        n = self.size = land.size
        self.shift = land.shadow_shift  # rows, cols from a cloud to its shadow
        self.max_obscured = max(1, (dates - 1) // 2)
        self.cloud, self.cirrus, self.cloud_at, self.cirrus_at = [], [], [], []
        taken = 0.0  # where earlier dates have their clouds, on the cloud fields' coarse grid
        for k in range(dates):
            rng = np.random.default_rng([seed, 0x5C1, k])
            cloud = SmoothField(rng, n, scale=60)
            cloud.grid = cloud.grid - 4.0 * taken  # this date's clouds form elsewhere
            self.cloud.append(cloud)
            self.cirrus.append(SmoothField(rng, n, scale=120))
            thick, flagged = rng.uniform(0.04, 0.12), rng.uniform(0.0, 0.06)
            level = _threshold(cloud, n, thick)
            taken = np.maximum(taken, ndimage.gaussian_filter((cloud.grid > level - 0.5).astype(float), 0.7))
            # opacity = (field - at) / ramp reaches the flagged level where the field passes the share's quantile
            self.cloud_at.append(level - _CLOUD_RAMP * _THICK)
            self.cirrus_at.append(_threshold(self.cirrus[k], n, flagged) - _CIRRUS_RAMP * _FLAGGED if flagged else np.inf)

    def block(self, r0: int, r1: int) -> list[Sky]:
        """Cloud, cirrus and shadow of every date on rows ``r0:r1``."""
        n, (dr, dc), h = self.size, self.shift, r1 - r0
        # Q: rows r0-dr .. r1+dr, cols -dc .. n+dc, where obscured pixels are counted; clouds
        # are read one shadow shift further up-left (P) to find the shadows cast into Q.
        count = np.zeros((h + 2 * dr, n + 2 * dc), dtype=np.int8)
        clouded = np.zeros((h + 2 * dr, n + 2 * dc), dtype=bool)
        out = []
        for k in range(len(self.cloud)):
            cloud = self.cloud[k].window(r0 - 2 * dr, r1 + dr, -2 * dc, n + dc, _ORDER)
            cloud = np.clip((cloud - self.cloud_at[k]) / _CLOUD_RAMP, 0, 1)
            cirrus = self.cirrus[k].window(r0 - dr, r1 + dr, -dc, n + dc, _ORDER)
            cirrus = np.clip((cirrus - self.cirrus_at[k]) / _CIRRUS_RAMP, 0, 0.25)
            cloud_q, cast_q = cloud[dr:, dc:], cloud[: h + 2 * dr, : n + 2 * dc]
            obscured = _any_2x2((cloud_q > _THICK) | (cast_q > _THICK) | (cirrus > _FLAGGED), r0 - dr, -dc)
            given_way = (count >= self.max_obscured) | clouded
            # a cloud at x stays if neither x nor x + shift (its shadow) has given way
            keep = ~(given_way[: h + dr, : n + dc] | given_way[dr:, dc:])
            cloud_r = cloud_q[: h + dr, : n + dc] * keep  # rows r0-dr .. r1, cols -dc .. n
            block = (slice(dr, h + dr), slice(dc, n + dc))
            out.append((cloud_r[block].astype(np.float32),
                        (cirrus[block] * ~given_way[block]).astype(np.float32),
                        cloud_r[:h, :n] > _THICK))
            count += obscured
            clouded |= _any_2x2(cloud_q > _THICK, r0 - dr, -dc)
        return out
