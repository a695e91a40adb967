"""``geoseg demo-data``: write a realistic, seeded Sentinel-2 L2A-like scene with labels.

Output folder::

    DIR/T33UUU_20230612T101559/   12 bands at native 10/20/60 m + SCL 20 m (GeoTIFF,
                                   or a .SAFE-like product with ``layout="safe"``)
    DIR/labels.tif                 10 m land-cover codes (see geoseg.demo.classes)
    DIR/README.txt                 what the files are

DNs carry the +1000 offset of processing baseline ≥ 04.00 and say so in their tags
(``BOA_ADD_OFFSET=-1000``), like real products. The grid is the real T33UUU tile grid.
A season of acquisitions over the same grid: :mod:`geoseg.demo.series`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from geoseg.demo.classes import CLOUD_SPECTRUM, DEMO_CLASSES, DEMO_SPECTRA
from geoseg.demo.files import (
    DEMO_TILE,
    LabelsWriter,
    Layout,
    SceneWriter,
    compact_date,
    scene_name,
    scl_codes,
)
from geoseg.demo.landscape import Landscape
from geoseg.errors import ConfigError
from geoseg.utils.outputs import atomic_folder, legacy_entries
from geoseg.utils.progress import progress_bar

__all__ = ["generate_demo_scene", "DemoScene", "DEMO_TILE", "DEMO_DATE", "DEMO_DATETIME", "DEMO_KIND",
           "DEMO_LEGACY", "BLOCK_ROWS", "check_size", "scene_tags"]

DEMO_DATETIME = datetime(2023, 6, 12, 10, 15, 59)
DEMO_DATE = compact_date(DEMO_DATETIME)
BLOCK_ROWS = 600  # multiple of 6: whole 20 m and 60 m rows per block


class DemoScene:
    """Paths of a generated demo scene."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.scene = next(p for p in sorted(self.root.iterdir()) if p.is_dir())
        self.labels = self.root / "labels.tif"


def check_size(size: int) -> None:
    """Refuse a demo size that is not a multiple of 6 ≥ 120 (whole 60 m pixels)."""
    if size % 6 or size < 120:
        ok = max(120, int(round(size / 6)) * 6)
        raise ConfigError(f"demo size {size} is not a multiple of 6 ≥ 120", hint=f"use --size {ok}")


def scene_tags(when: datetime, seed: int) -> dict[str, str]:
    """The GeoTIFF tags of every band file of one demo acquisition."""
    return {"BOA_ADD_OFFSET": "-1000", "PROCESSING_BASELINE": "05.09", "PROCESSING_LEVEL": "L2A",
            "datetime": when.strftime("%Y-%m-%dT%H:%M:%S"), "SOURCE": f"geoseg demo-data seed={seed}"}


def _surface_scl(cover: np.ndarray) -> np.ndarray:
    return np.where(cover == 1, 6, np.where(np.isin(cover, (5, 6)), 5, 4)).astype(np.uint8)


def _reflectance(land: Landscape, cover: np.ndarray, r0: int, r1: int, rng: np.random.Generator):
    """(12, rows, n) reflectance with parcel gain, texture, noise, clouds and shadows."""
    n = land.size
    spectra = np.stack([DEMO_SPECTRA[c] for c in sorted(DEMO_SPECTRA)]).astype(np.float32)  # (6, 12)
    refl = np.moveaxis(spectra[cover - 1], -1, 0)  # (12, rows, n)
    gain = land.parcel_gain_rows(r0, r1) * (1 + 0.04 * land.texture.rows(r0, r1, n))
    refl = refl * gain[None] + rng.normal(0, 0.004, size=refl.shape).astype(np.float32)
    cloud, cirrus, shadow = land.cloud_opacity(r0, r1), land.cirrus_opacity(r0, r1), land.shadow(r0, r1)
    haze = np.maximum(cloud, cirrus)[None]
    refl = (1 - haze) * refl + haze * CLOUD_SPECTRUM[:, None, None].astype(np.float32)
    refl = np.where((shadow & (cloud <= 0.3))[None], refl * 0.45, refl)
    return np.clip(refl, 0.0001, 1.5), cloud, cirrus, shadow


DEMO_KIND = "demo scene"
DEMO_LEGACY = legacy_entries("README.txt", "labels.tif", contains={"README.txt": "geoseg demo scene"},
                         optional=(f"{DEMO_TILE}_{DEMO_DATE}", f"S2B_MSIL2A_{DEMO_DATE}_N0509_R022_{DEMO_TILE}_{DEMO_DATE}.SAFE"))


def generate_demo_scene(
    out: str | Path,
    size: int = 960,
    seed: int = 0,
    layout: Layout = "per_band",
    progress: bool = True,
) -> DemoScene:
    """Write the demo scene to ``out`` (atomically) and return its paths.

    ``out`` must be new, empty or an earlier demo scene (whose files are replaced; a user's own
    files in it stay).

    Args:
        size: width and height of the 10 m grid; a multiple of 6 (whole 60 m pixels).
        seed: random seed; the same seed gives byte-identical rasters.
        layout: ``per_band`` files or a ``safe``-like product folder.
    """
    check_size(size)
    land = Landscape(size, seed)
    with atomic_folder(out, DEMO_KIND, legacy=DEMO_LEGACY) as tmp:
        with SceneWriter(tmp / scene_name(DEMO_DATETIME, layout), size, DEMO_DATETIME, layout,
                         scene_tags(DEMO_DATETIME, seed)) as scene:
            labels = LabelsWriter(tmp / "labels.tif", size)
            try:
                for r0 in progress_bar(range(0, size, BLOCK_ROWS), desc="demo scene", unit="block", enabled=progress):
                    r1 = min(size, r0 + BLOCK_ROWS)
                    rng = np.random.default_rng([seed, r0])
                    cover = land.land_cover(r0, r1)
                    refl, cloud, cirrus, shadow = _reflectance(land, cover, r0, r1, rng)
                    nodata = land.nodata(r0, r1)
                    labels.write(r0, r1, cover)
                    scene.write(r0, r1, refl, scl_codes(_surface_scl(cover), cloud, cirrus, shadow, nodata), nodata)
            finally:
                labels.close()
        (tmp / "README.txt").write_text(
            f"geoseg demo scene (synthetic, seed={seed}, {size}x{size} px at 10 m, tile {DEMO_TILE}, EPSG:32633).\n"
            "Bands at native 10/20/60 m with the +1000 DN offset (BOA_ADD_OFFSET=-1000), SCL at 20 m,\n"
            "labels.tif: " + ", ".join(f"{c}={n}" for c, n, _ in DEMO_CLASSES) + "\n"
        )
    return DemoScene(Path(out))
