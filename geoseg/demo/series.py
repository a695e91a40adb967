"""``geoseg demo-data --dates N``: a seeded season of demo acquisitions over one grid.

Output folder::

    DIR/T33UUU_20230413T101559/   one demo scene per acquisition (as ``generate_demo_scene``
    DIR/T33UUU_20230518T101559/   writes it: 12 bands + SCL, its own datetime tag and names)
    ...
    DIR/labels.tif                the land cover of every date (same classes and map as the
                                   single-date demo of that seed and size)
    DIR/README.txt

Dates are spread from mid-April to mid-October on the 5-day revisit of the single-date demo
(12 June 2023). Fields follow :mod:`geoseg.demo.season` (cropland and grassland look alike on
any one date, not over the season); clouds, cirrus and shadows differ per date
(:mod:`geoseg.demo.sky`).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from geoseg.demo.classes import CLOUD_SPECTRUM, DEMO_CLASSES
from geoseg.demo.files import DEMO_TILE, LabelsWriter, Layout, SceneWriter, scene_name, scl_codes
from geoseg.demo.generator import (
    BLOCK_ROWS,
    DEMO_DATETIME,
    DEMO_KIND,
    DEMO_LEGACY,
    check_size,
    generate_demo_scene,
    scene_tags,
)
from geoseg.demo.landscape import Landscape, SmoothField
from geoseg.demo.season import BROADLEAF, CONIFER, ENDMEMBERS, GREEN, LEAFLESS, SOIL, Season
from geoseg.demo.sky import SeasonSky, Sky
from geoseg.errors import ConfigError
from geoseg.utils.outputs import atomic_folder
from geoseg.utils.progress import progress_bar

__all__ = ["DemoSeries", "MAX_DATES", "generate_demo_series", "season_dates"]

_FIRST_DAY, _LAST_DAY, _REVISIT = -60, 120, 5  # days from the single-date demo: 13 April .. 10 October
MAX_DATES = (_LAST_DAY - _FIRST_DAY) // _REVISIT + 1
_FIELD_SPACING = 16  # px between management fields (~2.5 ha)
_STREAM = 0x5EA5  # the season's random streams, apart from the landscape's


@dataclass(frozen=True)
class DemoSeries:
    """Paths and acquisition times of a generated demo season."""

    root: Path
    scenes: tuple[Path, ...]  # one scene folder per date, in date order
    datetimes: tuple[datetime, ...]
    labels: Path


def season_dates(count: int) -> tuple[datetime, ...]:
    """``count`` acquisition times spread over the season (the single-date demo's for 1)."""
    if not 1 <= count <= MAX_DATES:
        raise ConfigError(f"a demo season has 1 to {MAX_DATES} dates, not {count}", hint="e.g. --dates 6")
    if count == 1:
        return (DEMO_DATETIME,)
    days = np.round(np.linspace(_FIRST_DAY, _LAST_DAY, count) / _REVISIT) * _REVISIT
    return tuple(DEMO_DATETIME + timedelta(days=int(d)) for d in days)


def _spacecraft(when: datetime) -> str:
    return "S2B" if (when - DEMO_DATETIME).days % 10 == 0 else "S2A"  # the two satellites alternate


class _Fields:
    """Management fields: Voronoi cells of seeds ~16 px (160 m) apart, each cropland, grassland or bare soil.

    They replace the single-date demo's ~700 m parcels (forest, towns, water stay), so that
    even a small scene holds dozens of fields of each kind.
    """

    def __init__(self, size: int, rng: np.random.Generator):
        self.count = max(16, int((size / _FIELD_SPACING) ** 2))
        self.tree = cKDTree(rng.uniform(0, size, size=(self.count, 2)))
        self.cover = rng.choice(np.array([3, 4, 6], dtype=np.uint8), size=self.count, p=[0.45, 0.4, 0.15])
        self.gain = rng.normal(1.0, 0.06, size=self.count).clip(0.85, 1.15).astype(np.float32)
        self.size = size

    def rows(self, r0: int, r1: int) -> np.ndarray:
        y, x = np.mgrid[r0:r1, 0 : self.size].astype(np.float32) + 0.5
        return self.tree.query(np.column_stack([x.ravel(), y.ravel()]), workers=1)[1].reshape(y.shape)


def _reflectance(table: np.ndarray, brightness: np.ndarray, cover: np.ndarray, field: np.ndarray,
                 patch: np.ndarray, gain: np.ndarray, sky: Sky, rng: np.random.Generator):
    """(12, rows, n) reflectance of one date and the clear-sky SCL code of each pixel."""
    shares = table[cover, field]  # (rows, n, endmembers), a copy
    green, soil = shares[..., GREEN], shares[..., SOIL]
    denser = np.clip(0.12 * green * patch, -green, soil)  # patches of denser / thinner canopy
    green += denser
    soil -= denser
    vegetated = green + shares[..., BROADLEAF] + shares[..., CONIFER] + 0.5 * shares[..., LEAFLESS]
    soil *= brightness[field]
    refl = np.moveaxis(shares @ ENDMEMBERS, -1, 0) * gain[None]
    refl += rng.normal(0, 0.004, size=refl.shape).astype(np.float32)
    cloud, cirrus, shadow = sky
    haze = np.maximum(cloud, cirrus)[None]
    refl = (1 - haze) * refl + haze * CLOUD_SPECTRUM[:, None, None].astype(np.float32)
    refl = np.where((shadow & (cloud <= 0.3))[None], refl * 0.45, refl)
    surface = np.where(cover == 1, 6, np.where((cover == 5) | (vegetated < 0.3), 5, 4)).astype(np.uint8)
    return np.clip(refl, 0.0001, 1.5), surface


_SCL_RANK = np.zeros(256, dtype=np.uint8)
_SCL_RANK[[3, 10, 8, 9, 0]] = [1, 2, 3, 4, 5]  # shadow < cirrus < cloud medium < high < no data


def _worst_of_2x2(scl: np.ndarray) -> np.ndarray:
    """10 m SCL whose 20 m sample (``[::2, ::2]``) is the worst class of each 2 × 2 block.

    Like Sen2Cor's dilated masks: a 20 m pixel touching a cloud is flagged, so no cloudy 10 m
    pixel passes as clear.
    """
    h, w = scl.shape
    blocks = scl.reshape(h // 2, 2, w // 2, 2).transpose(0, 2, 1, 3).reshape(h // 2, w // 2, 4)
    worst = np.take_along_axis(blocks, _SCL_RANK[blocks].argmax(axis=-1)[..., None], axis=-1)[..., 0]
    out = scl.copy()
    out[::2, ::2] = worst
    return out


def generate_demo_series(
    out: str | Path,
    size: int = 960,
    seed: int = 0,
    dates: int = 6,
    layout: Layout = "per_band",
    progress: bool = True,
) -> DemoSeries:
    """Write a season of demo acquisitions and one ``labels.tif`` to ``out`` (atomically).

    ``dates=1`` writes exactly the single-date demo (:func:`generate_demo_scene`). ``out`` must
    be new, empty or earlier demo data (whose files are replaced; a user's own files stay).

    Args:
        size: width and height of the 10 m grid; a multiple of 6 (whole 60 m pixels).
        seed: random seed; the same seed gives byte-identical rasters.
        dates: number of acquisitions, 1 to :data:`MAX_DATES`.
        layout: ``per_band`` files or ``safe``-like product folders.
    """
    check_size(size)
    whens = season_dates(dates)
    if dates == 1:
        demo = generate_demo_scene(out, size=size, seed=seed, layout=layout, progress=progress)
        return DemoSeries(demo.root, (demo.scene,), whens, demo.labels)
    land = Landscape(size, seed)
    sky = SeasonSky(land, dates, seed)
    rng = np.random.default_rng([seed, _STREAM])
    fields = _Fields(size, rng)
    season, patches = Season(fields.count, rng), SmoothField(rng, size, scale=10, smooth=1.0)
    days = [w.timetuple().tm_yday for w in whens]
    tables = [season.abundances(day, np.random.default_rng([seed, _STREAM, k])) for k, day in enumerate(days)]
    names = [scene_name(w, layout, _spacecraft(w)) for w in whens]
    with atomic_folder(out, DEMO_KIND, legacy=DEMO_LEGACY) as tmp, ExitStack() as files:
        writers = [files.enter_context(SceneWriter(tmp / name, size, w, layout, scene_tags(w, seed), _spacecraft(w)))
                   for name, w in zip(names, whens, strict=True)]
        labels = LabelsWriter(tmp / "labels.tif", size)
        files.callback(labels.close)
        for r0 in progress_bar(range(0, size, BLOCK_ROWS), desc="demo season", unit="block", enabled=progress):
            r1 = min(size, r0 + BLOCK_ROWS)
            cover, field, nodata = land.land_cover(r0, r1), fields.rows(r0, r1), land.nodata(r0, r1)
            farmed = np.isin(cover, (3, 4, 6))
            cover[farmed] = fields.cover[field[farmed]]
            gain = fields.gain[field] * (1 + 0.04 * land.texture.rows(r0, r1, size))
            patch = patches.rows(r0, r1, size)
            labels.write(r0, r1, cover)
            for k, (writer, date_sky) in enumerate(zip(writers, sky.block(r0, r1), strict=True)):
                refl, surface = _reflectance(*tables[k], cover, field, patch, gain, date_sky,
                                             np.random.default_rng([seed, _STREAM, k, r0]))
                writer.write(r0, r1, refl, _worst_of_2x2(scl_codes(surface, *date_sky, nodata)), nodata)
        files.close()  # before the folder takes its place (SAFE metadata written on success)
        (tmp / "README.txt").write_text(
            f"geoseg demo scene season (synthetic, seed={seed}, {size}x{size} px at 10 m, tile {DEMO_TILE}, "
            f"EPSG:32633), {dates} acquisitions:\n" + "".join(f"  {n}\n" for n in names)
            + "Bands at native 10/20/60 m with the +1000 DN offset (BOA_ADD_OFFSET=-1000), SCL at 20 m,\n"
            "labels.tif (every date): " + ", ".join(f"{c}={n}" for c, n, _ in DEMO_CLASSES) + "\n"
        )
    root = Path(out)
    return DemoSeries(root, tuple(root / n for n in names), whens, root / "labels.tif")
