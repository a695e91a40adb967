"""A time series as prediction input: the dates of one location on one grid, in acquisition order.

``geoseg predict --series`` takes one ``--scene`` per date (any location geoseg reads); a catalog
dataset with ``series:`` scenes gives its chosen dates (padding included). The predictor reads
every date's features window by window (:func:`geoseg.tiling.series.read_series`), so memory
grows with window x T, never with the scene x T, and writes one map on the common grid.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from geoseg.errors import ConfigError, CRSMismatchError
from geoseg.io.grid import Grid
from geoseg.io.scene import Scene, open_scene

if TYPE_CHECKING:
    from geoseg.config.series import SceneSeries

__all__ = ["SeriesInput", "series_from_catalog", "series_from_scenes"]


@dataclass(frozen=True)
class SeriesInput:
    """The dates of a series (``None``: a padded, fully masked date), their acquisition times and an id."""

    scenes: tuple[Scene | None, ...]
    acquired: tuple[str | None, ...]
    scene_id: str

    @property
    def reference(self) -> Scene:
        """The first real date: its grid is the output grid."""
        return next(s for s in self.scenes if s is not None)

    @property
    def time_steps(self) -> int:
        """Number of dates T."""
        return len(self.scenes)

    @property
    def grid(self) -> Grid:
        """The series' common grid (the first date's)."""
        return self.reference.grid

    @property
    def path(self) -> str:
        """Every date's source, in time order (``; `` between them)."""
        return "; ".join(s.path for s in self.scenes if s is not None)

    def files(self) -> list[str]:
        """Every file the dates read (inputs an output must never replace)."""
        return [f for s in self.scenes if s is not None for f in s.files()]

    def require_bands(self, bands: Sequence[str], what: str) -> None:
        """Every date has ``bands`` (else :class:`~geoseg.errors.BandError` naming the date)."""
        for scene in self.scenes:
            if scene is not None:
                scene.require_bands(bands, what)


def series_from_catalog(series: SceneSeries) -> SeriesInput:
    """The chosen dates of a catalog series (:func:`geoseg.config.series.open_series`)."""
    return SeriesInput(series.scenes, tuple(d.acquired for d in series.dates), series.location)


def series_from_scenes(scenes: Sequence[Scene | str | Path], scene_id: str | None = None) -> SeriesInput:
    """Open ``scenes`` (one per date), check they share a grid, order them by acquisition time.

    Raises:
        ConfigError: fewer than 2 dates, a date without an acquisition time, or two dates acquired at once.
        CRSMismatchError: a date on another grid than the first.
    """
    from geoseg.config.series import parse_acquired

    opened = [s if isinstance(s, Scene) else open_scene(s) for s in scenes]
    if len(opened) < 2:
        raise ConfigError(f"--series needs the scenes of several dates, got {len(opened)}",
                          hint="repeat --scene, one per date (same grid), or drop --series")
    first = opened[0]
    for scene in opened[1:]:
        if not scene.grid.same_as(first.grid):
            g, f = scene.grid, first.grid
            raise CRSMismatchError(
                f"the series' dates are not on one grid: {g.height} x {g.width} px {g.crs.to_string()} "
                f"{tuple(round(v, 3) for v in g.transform)[:6]} instead of {f.height} x {f.width} px "
                f"{f.crs.to_string()} {tuple(round(v, 3) for v in f.transform)[:6]} ({first.path})", path=scene.path,
                hint="resample every date onto one grid (gdalwarp -te/-tr/-t_srs of the first date)")
    dated: list[tuple[dt.datetime, Scene]] = []
    for scene in opened:
        when = parse_acquired(scene.datetime)
        if when is None:
            raise ConfigError("a date of the series has no acquisition time in its metadata", path=scene.path,
                              hint="name the file or folder with the date (YYYYMMDDTHHMMSS), or list the series "
                                   "in a catalog with acquired: per date")
        if any(when == w for w, _ in dated):
            raise ConfigError(f"two dates of the series are acquired at {when.isoformat()}", path=scene.path,
                              hint="give each acquisition once")
        dated.append((when, scene))
    dated.sort(key=lambda d: d[0])
    return SeriesInput(tuple(s for _, s in dated), tuple(w.isoformat() for w, _ in dated),
                       scene_id or dated[0][1].scene_id)
