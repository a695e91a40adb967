"""The files of a demo acquisition: band GeoTIFFs at native resolution, SCL, labels, SAFE metadata.

One :class:`SceneWriter` per acquisition takes 10 m reflectance block by block and writes the
DN (with the +1000 offset of processing baseline ≥ 04.00) at each band's native resolution.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from geoseg.demo.classes import DEMO_CLASSES, L2A_BANDS
from geoseg.io.sensors import S2_BANDS

__all__ = ["DEMO_TILE", "Layout", "SceneWriter", "LabelsWriter", "scene_name", "compact_date", "scl_codes"]

DEMO_TILE = "T33UUU"
Layout = Literal["per_band", "safe"]
_TILE_ORIGIN = (300000.0, 5900040.0)  # upper-left of Sentinel-2 tile 33UUU, EPSG:32633
_OFFSET_DN = 1000


def compact_date(when: datetime) -> str:
    """``YYYYMMDDTHHMMSS`` as in Sentinel-2 file names."""
    return when.strftime("%Y%m%dT%H%M%S")


def scene_name(when: datetime, layout: Layout, spacecraft: str = "S2B") -> str:
    """The folder of one acquisition: ``T33UUU_<date>`` or a ``.SAFE`` product name."""
    date = compact_date(when)
    return f"{spacecraft}_MSIL2A_{date}_N0509_R022_{DEMO_TILE}_{date}.SAFE" if layout == "safe" else f"{DEMO_TILE}_{date}"


def _profile(n: int, res: int, dtype: str) -> dict:
    scale = res // 10
    x0, y0 = _TILE_ORIGIN[0] + 6000.0, _TILE_ORIGIN[1] - 6000.0
    return {
        "driver": "GTiff", "width": n // scale, "height": n // scale, "count": 1, "dtype": dtype,
        "crs": CRS.from_epsg(32633), "transform": Affine(res, 0, x0, 0, -res, y0), "nodata": 0,
        "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
    }


def _band_path(folder: Path, band: str, res: int, layout: Layout, date: str) -> Path:
    name = f"{DEMO_TILE}_{date}_{band}_{res}m.tif"
    if layout == "safe":
        return folder / "GRANULE" / f"L2A_{DEMO_TILE}_A000000_{date}" / "IMG_DATA" / f"R{res}m" / name
    return folder / name


def _mtd_xml(when: datetime, spacecraft: str) -> str:
    offsets = "\n".join(f'        <BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>' for i in range(13))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
  <n1:General_Info><Product_Info>
    <PRODUCT_START_TIME>{when.strftime("%Y-%m-%dT%H:%M:%S")}.024Z</PRODUCT_START_TIME>
    <PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL><PRODUCT_TYPE>S2MSI2A</PRODUCT_TYPE>
    <PROCESSING_BASELINE>05.09</PROCESSING_BASELINE>
    <Datatake><SPACECRAFT_NAME>Sentinel-{spacecraft[1:]}</SPACECRAFT_NAME></Datatake>
  </Product_Info>
  <Product_Image_Characteristics>
    <QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>
    <BOA_ADD_OFFSET_VALUES_LIST>
{offsets}
    </BOA_ADD_OFFSET_VALUES_LIST>
  </Product_Image_Characteristics></n1:General_Info>
</n1:Level-2A_User_Product>
"""


def scl_codes(surface: np.ndarray, cloud: np.ndarray, cirrus: np.ndarray, shadow: np.ndarray,
              nodata: np.ndarray) -> np.ndarray:
    """Scene classification: the clear-sky ``surface`` code (4, 5 or 6) under clouds, cirrus, shadows."""
    scl = surface.astype(np.uint8, copy=True)
    scl[(cirrus > 0.12) & (cloud <= 0.3)] = 10
    scl[shadow & (cloud <= 0.3)] = 3
    scl[(cloud > 0.3) & (cloud <= 0.6)] = 8
    scl[cloud > 0.6] = 9
    scl[nodata] = 0
    return scl


class SceneWriter:
    """The band files and SCL of one acquisition, open for writing 10 m row blocks in order."""

    def __init__(self, folder: Path, size: int, when: datetime, layout: Layout, tags: dict[str, str],
                 spacecraft: str = "S2B"):
        self.folder, self.size, self.when, self.layout, self.spacecraft = folder, size, when, layout, spacecraft
        date = compact_date(when)
        self.files = {}
        try:
            for band in (*L2A_BANDS, "SCL"):
                res = 20 if band == "SCL" else S2_BANDS[band].resolution
                path = _band_path(folder, band, res, layout, date)
                path.parent.mkdir(parents=True, exist_ok=True)
                self.files[band] = rasterio.open(path, "w", **_profile(size, res, "uint8" if band == "SCL" else "uint16"))
                self.files[band].update_tags(**tags)
                self.files[band].set_band_description(1, band)
        except BaseException:
            self.close()
            raise

    def write(self, r0: int, r1: int, refl: np.ndarray, scl: np.ndarray, nodata: np.ndarray) -> None:
        """Write rows ``r0:r1`` (multiples of 6) from ``(12, rows, size)`` reflectance and 10 m SCL."""
        size = self.size
        dn = np.round(refl * 10000 + _OFFSET_DN).astype(np.uint16)
        dn[:, nodata] = 0
        for i, band in enumerate(L2A_BANDS):
            f = S2_BANDS[band].resolution // 10
            block = dn[i].reshape((r1 - r0) // f, f, size // f, f)
            native = block.mean(axis=(1, 3)).round().astype(np.uint16)
            native[(block == 0).any(axis=(1, 3))] = 0  # any no-data pixel → no data
            self.files[band].write(native, 1, window=Window(0, r0 // f, size // f, (r1 - r0) // f))
        self.files["SCL"].write(scl[::2, ::2], 1, window=Window(0, r0 // 2, size // 2, (r1 - r0) // 2))

    def close(self) -> None:
        """Close every band file."""
        for ds in self.files.values():
            ds.close()

    def finish(self) -> None:
        """Close the files and write the product metadata of a SAFE layout."""
        self.close()
        if self.layout == "safe":
            (self.folder / "MTD_MSIL2A.xml").write_text(_mtd_xml(self.when, self.spacecraft))

    def __enter__(self) -> SceneWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.finish()
        else:
            self.close()


class LabelsWriter:
    """``labels.tif``: the 10 m land-cover codes with their names and colours."""

    def __init__(self, path: Path, size: int):
        self.size = size
        self.ds = rasterio.open(path, "w", **_profile(size, 10, "uint8"))
        self.ds.update_tags(classes=";".join(f"{c}={n}" for c, n, _ in DEMO_CLASSES))
        self.ds.write_colormap(1, {c: tuple(int(col[i : i + 2], 16) for i in (1, 3, 5)) for c, _, col in DEMO_CLASSES})

    def write(self, r0: int, r1: int, cover: np.ndarray) -> None:
        """Write label rows ``r0:r1``."""
        self.ds.write(cover, 1, window=Window(0, r0, self.size, r1 - r0))

    def close(self) -> None:
        """Close the raster."""
        self.ds.close()
