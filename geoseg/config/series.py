"""Time-series scenes of the catalog: open every date, check the grid, order and choose ``T`` dates.

A scene entry with ``series:`` lists acquisitions of one location. Each is opened with
:func:`~geoseg.io.open_scene` exactly as a single scene (offset, scale, mask, invalid SCL classes
of the dataset), so every location geoseg reads works as a date. Then, in this order:

1. every date must be on the first date's grid (CRS, transform, shape), else one line names it;
2. dates are ordered by acquisition datetime (the catalog's ``acquired``, else the scene's
   metadata: tags, SAFE product time, STAC ``datetime``, the file name);
3. ``date_range`` keeps dates whose day lies in ``[first, last]``; ``min_valid_fraction``
   drops dates whose scene has fewer valid pixels (measured as ``geoseg inspect`` does: every
   pixel up to 2048 px a side, a decimated sample beyond);
4. with more usable dates than ``time_steps``, ``T`` are chosen evenly through the season
   (the dates closest to ``T`` evenly spaced times from the first to the last usable date,
   in order); with fewer, rule ``even`` is an error and rule ``pad`` appends fully masked
   dates (recorded as padding).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geoseg.config.catalog import AcquisitionEntry, Catalog, Dataset, SceneEntry
from geoseg.errors import CatalogError, CRSMismatchError
from geoseg.io.grid import Grid
from geoseg.io.scene import Scene, open_scene
from geoseg.io.stac import load_item

if TYPE_CHECKING:
    from pystac import Item

__all__ = ["SeriesDate", "SceneSeries", "open_series", "parse_acquired", "choose_evenly"]

_TIFF_DATETIME = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class SeriesDate:
    """One of a series' ``T`` dates: an opened scene, or padding (no scene: every pixel invalid)."""

    scene: Scene | None
    acquired: str | None  # ISO 8601 to the second (UTC when the metadata gave a zone); None for padding
    valid_fraction: float | None = None  # the scene's valid fraction, when min_valid_fraction asked for it

    @property
    def padded(self) -> bool:
        """True for a padding date (fully masked, no scene)."""
        return self.scene is None


@dataclass(frozen=True)
class SceneSeries:
    """A location's ``T`` dates on one grid, and what became of every date of the catalog."""

    location: str  # the scene entry's id
    grid: Grid
    rule: str
    dates: tuple[SeriesDate, ...]  # chosen dates in time order, then padding
    considered: tuple[dict, ...]  # every catalog date: source, acquired, valid fraction, used, why not

    @property
    def scenes(self) -> tuple[Scene | None, ...]:
        """Each date's scene (None for padding)."""
        return tuple(d.scene for d in self.dates)

    @property
    def reference(self) -> Scene:
        """The first real date (its grid is the series' grid)."""
        return next(d.scene for d in self.dates if d.scene is not None)

    @property
    def padded(self) -> int:
        """Number of padding dates."""
        return sum(d.padded for d in self.dates)

    def record(self) -> dict:
        """The manifest's description of this series (what was chosen and why)."""
        return {"scene_id": self.location, "dates": [d.acquired for d in self.dates],
                "padded": self.padded, "considered": list(self.considered)}


def parse_acquired(text: str | None) -> dt.datetime | None:
    """An acquisition datetime from metadata text (ISO 8601, ``YYYYMMDD[THHMMSS]``, TIFF tags); naive UTC."""
    if not text:
        return None
    text = str(text).strip()
    tiff = _TIFF_DATETIME.match(text)
    try:
        if tiff:
            year, month, day, hour, minute, second = (int(g) for g in tiff.groups())
            value = dt.datetime(year, month, day, hour, minute, second)
        else:
            value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.replace(microsecond=0)


def choose_evenly(times: list[float], count: int) -> list[int]:
    """Indices of ``count`` of the sorted ``times`` closest to evenly spaced times from first to last.

    Minimises the total distance to the targets with strictly increasing indices (dynamic
    programming, ``O(count · len(times))``); ties go to the earlier date.
    """
    n = len(times)
    if count >= n:
        return list(range(n))
    t = np.asarray(times, dtype=np.float64)
    targets = np.linspace(t[0], t[-1], count)
    cost = np.abs(t[None, :] - targets[:, None])  # (count, n)
    total = np.full((count, n), np.inf)
    back = np.zeros((count, n), dtype=np.int64)
    total[0] = cost[0]
    for k in range(1, count):
        best, arg = np.inf, -1
        for i in range(k, n - (count - 1 - k)):
            if total[k - 1, i - 1] < best:  # best predecessor among indices < i
                best, arg = total[k - 1, i - 1], i - 1
            total[k, i], back[k, i] = best + cost[k, i], arg
    last = int(np.argmin(total[-1]))
    picked = [last]
    for k in range(count - 1, 0, -1):
        picked.append(int(back[k, picked[-1]]))
    return picked[::-1]


def _shown(item: AcquisitionEntry) -> str:
    return str(item.path if item.path is not None else item.stac)


def _open_date(catalog: Catalog, dataset: Dataset, entry: SceneEntry, item: AcquisitionEntry, number: int) -> Scene:
    source: str | Path | Item
    if item.stac is not None:
        source = load_item(catalog.locate(item.stac))
    else:
        assert item.path is not None  # guaranteed by AcquisitionEntry validation
        source = catalog.locate(item.path)
    return open_scene(source, offset=item.offset, scale=item.scale, date=item.date, band_names=item.band_names,
                      invalid_scl=dataset.invalid_scl, mask=catalog.locate(item.mask) if item.mask else None,
                      scene_id=f"{entry.id}#{number}")


def _grid_difference(grid: Grid, first: Grid) -> str:
    if grid.crs != first.crs:
        return f"CRS {grid.crs.to_string()} instead of {first.crs.to_string()}"
    if grid.shape != first.shape:
        return f"{grid.height} x {grid.width} px instead of {first.height} x {first.width}"
    return f"transform {tuple(round(v, 3) for v in grid.transform)} instead of {tuple(first.transform)}"


def _check_grid(entry: SceneEntry, number: int, scene: Scene, first: Scene) -> None:
    if scene.grid.same_as(first.grid):
        return
    left, bottom, right, top = first.grid.bounds
    epsg = first.grid.crs.to_epsg()
    raise CRSMismatchError(
        f"date {number} of series {entry.id!r} is not on the grid of its date 1 ({first.path}): "
        f"{_grid_difference(scene.grid, first.grid)}", path=scene.path,
        hint=f"resample its bands onto date 1's grid (gdalwarp -t_srs {f'EPSG:{epsg}' if epsg else 'SRS'} "
        f"-te {left:g} {bottom:g} {right:g} {top:g} -tr 10 10 -r bilinear IN OUT; SCL: -r near), or list it under "
        "another scene")


def open_series(catalog: Catalog, dataset: Dataset, entry: SceneEntry) -> SceneSeries:
    """Open, check, order and choose the dates of ``entry``'s series (see the module docstring).

    Raises:
        CRSMismatchError: a date on another grid than the first. CatalogError: a date without
        an acquisition datetime, two dates acquired at the same time, no usable date, or (rule
        ``even``) fewer usable dates than ``time_steps``. Errors of :func:`~geoseg.io.open_scene`.
    """
    assert entry.series is not None and dataset.time_steps is not None  # guaranteed by the catalog's validation
    steps = dataset.time_steps
    opened: list[tuple[dt.datetime, int, Scene]] = []
    for number, item in enumerate(entry.series, start=1):
        scene = _open_date(catalog, dataset, entry, item, number)
        if opened:
            _check_grid(entry, number, scene, opened[0][2])
        when = parse_acquired(item.acquired) if item.acquired else parse_acquired(scene.datetime)
        if when is None:
            raise CatalogError(
                f"date {number} of series {entry.id!r} ({_shown(item)}) has "
                + (f"an unreadable acquisition datetime {item.acquired!r}" if item.acquired
                   else "no acquisition datetime in its metadata"), path=catalog.source,
                hint="give it as acquired: YYYY-MM-DD[THH:MM:SS] on that date in the catalog")
        same = next((n for w, n, _ in opened if w == when), None)
        if same is not None:
            raise CatalogError(f"dates {same} and {number} of series {entry.id!r} are both acquired at "
                               f"{when.isoformat()}", path=catalog.source,
                               hint="list each acquisition once (or set acquired: on the one whose metadata is wrong)")
        opened.append((when, number, scene.with_options(scene_id=f"{entry.id}@{when.isoformat()}")))
    opened.sort(key=lambda x: x[0])
    considered: dict[int, dict[str, Any]] = {n: {"date": n, "path": s.path, "acquired": w.isoformat(), "valid_fraction": None, "used": False,
                      "why": ""} for w, n, s in opened}
    usable = []
    fractions: dict[int, float] = {}
    for when, number, scene in opened:
        info = considered[number]
        if entry.date_range is not None and not entry.date_range[0] <= when.date() <= entry.date_range[1]:
            info["why"] = "outside date_range"
            continue
        if entry.min_valid_fraction is not None:
            from geoseg.io.summary import summarise_scene

            fractions[number] = info["valid_fraction"] = round(summarise_scene(scene, sample=True).valid_fraction, 6)
            if fractions[number] < entry.min_valid_fraction:
                info["why"] = f"valid fraction below min_valid_fraction {entry.min_valid_fraction}"
                continue
        usable.append((when, number, scene))
    _check_count(catalog, dataset, entry, len(usable), len(opened))
    chosen = [usable[i] for i in choose_evenly([w.timestamp() for w, _, _ in usable], steps)]
    for _, number, _ in usable:
        considered[number]["why"] = "not chosen (even selection)"
    dates = []
    for when, number, scene in chosen:
        considered[number].update(used=True, why="")
        dates.append(SeriesDate(scene, when.isoformat(), fractions.get(number)))
    dates += [SeriesDate(None, None)] * (steps - len(dates))
    return SceneSeries(entry.id, chosen[0][2].grid, dataset.series_rule, tuple(dates),
                       tuple(considered[n] for _, n, _ in opened))


def _check_count(catalog: Catalog, dataset: Dataset, entry: SceneEntry, usable: int, total: int) -> None:
    steps = dataset.time_steps
    assert steps is not None
    if usable >= steps or (usable > 0 and dataset.series_rule == "pad"):
        return
    selection = " and ".join(x for x, on in (("date_range", entry.date_range is not None),
                                              ("min_valid_fraction", entry.min_valid_fraction is not None)) if on)
    kept = f"{usable} of its {total} dates pass {selection}" if selection else f"{total} date{'s' * (total > 1)}"
    raise CatalogError(
        f"series {entry.id!r} has {kept}, but time_steps is {steps}", path=catalog.source,
        hint=("add dates, widen the selection, or lower time_steps" if usable == 0 else
              "add dates, widen the selection, lower time_steps, or set series_rule: pad (fully masked dates "
              "fill the rest)"))
