"""``geoseg demo-data``: write a realistic, seeded Sentinel-2 L2A-like scene with labels.

Output folder::

    DIR/T33UUU_20230612T101559/   12 bands at native 10/20/60 m + SCL 20 m (GeoTIFF,
                                   or a .SAFE-like product with ``layout="safe"``)
    DIR/labels.tif                 10 m land-cover codes (see geoseg.demo.classes)
    DIR/README.txt                 what the files are

DNs carry the +1000 offset of processing baseline ≥ 04.00 and say so in their tags
(``BOA_ADD_OFFSET=-1000``), like real products. The grid is the real T33UUU tile grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from geoseg.demo.classes import CLOUD_SPECTRUM, DEMO_CLASSES, DEMO_SPECTRA, L2A_BANDS
from geoseg.demo.landscape import Landscape
from geoseg.errors import ConfigError
from geoseg.io.sensors import S2_BANDS
from geoseg.utils.outputs import atomic_folder, legacy_entries
from geoseg.utils.progress import progress_bar

__all__ = ["generate_demo_scene", "DemoScene", "DEMO_TILE", "DEMO_DATE"]

DEMO_TILE = "T33UUU"
DEMO_DATE = "20230612T101559"
_TILE_ORIGIN = (300000.0, 5900040.0)  # upper-left of Sentinel-2 tile 33UUU, EPSG:32633
_OFFSET_DN = 1000
_BLOCK_ROWS = 600  # multiple of 6: whole 20 m and 60 m rows per block


class DemoScene:
    """Paths of a generated demo scene."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.scene = next(p for p in sorted(self.root.iterdir()) if p.is_dir())
        self.labels = self.root / "labels.tif"


def _profile(n: int, res: int, dtype: str) -> dict:
    scale = res // 10
    x0, y0 = _TILE_ORIGIN[0] + 6000.0, _TILE_ORIGIN[1] - 6000.0
    return {
        "driver": "GTiff", "width": n // scale, "height": n // scale, "count": 1, "dtype": dtype,
        "crs": CRS.from_epsg(32633), "transform": Affine(res, 0, x0, 0, -res, y0), "nodata": 0,
        "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
    }


def _band_path(folder: Path, band: str, res: int, layout: str) -> Path:
    name = f"{DEMO_TILE}_{DEMO_DATE}_{band}_{res}m.tif"
    if layout == "safe":
        return folder / "GRANULE" / f"L2A_{DEMO_TILE}_A000000_{DEMO_DATE}" / "IMG_DATA" / f"R{res}m" / name
    return folder / name


def _mtd_xml() -> str:
    offsets = "\n".join(f'        <BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>' for i in range(13))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
  <n1:General_Info><Product_Info>
    <PRODUCT_START_TIME>2023-06-12T10:15:59.024Z</PRODUCT_START_TIME>
    <PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL><PRODUCT_TYPE>S2MSI2A</PRODUCT_TYPE>
    <PROCESSING_BASELINE>05.09</PROCESSING_BASELINE>
    <Datatake><SPACECRAFT_NAME>Sentinel-2B</SPACECRAFT_NAME></Datatake>
  </Product_Info>
  <Product_Image_Characteristics>
    <QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>
    <BOA_ADD_OFFSET_VALUES_LIST>
{offsets}
    </BOA_ADD_OFFSET_VALUES_LIST>
  </Product_Image_Characteristics></n1:General_Info>
</n1:Level-2A_User_Product>
"""


def _scl(cover: np.ndarray, cloud: np.ndarray, cirrus: np.ndarray, shadow: np.ndarray, nodata: np.ndarray) -> np.ndarray:
    scl = np.where(cover == 1, 6, np.where(np.isin(cover, (5, 6)), 5, 4)).astype(np.uint8)
    scl[(cirrus > 0.12) & (cloud <= 0.3)] = 10
    scl[shadow & (cloud <= 0.3)] = 3
    scl[(cloud > 0.3) & (cloud <= 0.6)] = 8
    scl[cloud > 0.6] = 9
    scl[nodata] = 0
    return scl


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
_LEGACY = legacy_entries("README.txt", "labels.tif", contains={"README.txt": "geoseg demo scene"},
                         optional=(f"{DEMO_TILE}_{DEMO_DATE}", f"S2B_MSIL2A_{DEMO_DATE}_N0509_R022_{DEMO_TILE}_{DEMO_DATE}.SAFE"))


def generate_demo_scene(
    out: str | Path,
    size: int = 960,
    seed: int = 0,
    layout: Literal["per_band", "safe"] = "per_band",
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
    if size % 6 or size < 120:
        ok = max(120, int(round(size / 6)) * 6)
        raise ConfigError(f"demo size {size} is not a multiple of 6 ≥ 120", hint=f"use --size {ok}")
    land = Landscape(size, seed)
    scene_name = f"S2B_MSIL2A_{DEMO_DATE}_N0509_R022_{DEMO_TILE}_{DEMO_DATE}.SAFE" if layout == "safe" else f"{DEMO_TILE}_{DEMO_DATE}"
    tags = {"BOA_ADD_OFFSET": "-1000", "PROCESSING_BASELINE": "05.09", "PROCESSING_LEVEL": "L2A",
            "datetime": "2023-06-12T10:15:59", "SOURCE": f"geoseg demo-data seed={seed}"}
    with atomic_folder(out, DEMO_KIND, legacy=_LEGACY) as tmp:
        folder = tmp / scene_name
        files = {}
        for band in (*L2A_BANDS, "SCL"):
            res = 20 if band == "SCL" else S2_BANDS[band].resolution
            path = _band_path(folder, band, res, layout)
            path.parent.mkdir(parents=True, exist_ok=True)
            files[band] = rasterio.open(path, "w", **_profile(size, res, "uint8" if band == "SCL" else "uint16"))
            files[band].update_tags(**tags)
            files[band].set_band_description(1, band)
        labels = rasterio.open(tmp / "labels.tif", "w", **_profile(size, 10, "uint8"))
        labels.update_tags(classes=";".join(f"{c}={n}" for c, n, _ in DEMO_CLASSES))
        labels.write_colormap(1, {c: tuple(int(col[i : i + 2], 16) for i in (1, 3, 5)) for c, _, col in DEMO_CLASSES})
        try:
            rows = range(0, size, _BLOCK_ROWS)
            for r0 in progress_bar(rows, desc="demo scene", unit="block", enabled=progress):
                r1 = min(size, r0 + _BLOCK_ROWS)
                rng = np.random.default_rng([seed, r0])
                cover = land.land_cover(r0, r1)
                refl, cloud, cirrus, shadow = _reflectance(land, cover, r0, r1, rng)
                nodata = land.nodata(r0, r1)
                dn = np.round(refl * 10000 + _OFFSET_DN).astype(np.uint16)
                dn[:, nodata] = 0
                labels.write(cover, 1, window=Window(0, r0, size, r1 - r0))
                for i, band in enumerate(L2A_BANDS):
                    f = S2_BANDS[band].resolution // 10
                    block = dn[i].reshape((r1 - r0) // f, f, size // f, f)
                    native = block.mean(axis=(1, 3)).round().astype(np.uint16)
                    native[(block == 0).any(axis=(1, 3))] = 0  # any no-data pixel → no data
                    files[band].write(native, 1, window=Window(0, r0 // f, size // f, (r1 - r0) // f))
                scl = _scl(cover, cloud, cirrus, shadow, nodata)[::2, ::2]
                files["SCL"].write(scl, 1, window=Window(0, r0 // 2, size // 2, (r1 - r0) // 2))
        finally:
            for ds in (*files.values(), labels):
                ds.close()
        if layout == "safe":
            (folder / "MTD_MSIL2A.xml").write_text(_mtd_xml())
        (tmp / "README.txt").write_text(
            f"geoseg demo scene (synthetic, seed={seed}, {size}x{size} px at 10 m, tile {DEMO_TILE}, EPSG:32633).\n"
            "Bands at native 10/20/60 m with the +1000 DN offset (BOA_ADD_OFFSET=-1000), SCL at 20 m,\n"
            "labels.tif: " + ", ".join(f"{c}={n}" for c, n, _ in DEMO_CLASSES) + "\n"
        )
    return DemoScene(Path(out))
