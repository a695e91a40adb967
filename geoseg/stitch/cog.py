"""Stream full-width rows into a Cloud-Optimized GeoTIFF without holding the raster.

Rows are collected into 512-row strips and written to a temporary tiled GTiff (one write per
strip, so no tile is ever rewritten). :meth:`StreamingCOG.finish` then converts it with GDAL's
COG driver (DEFLATE, 512 × 512 tiles, internal overviews with the chosen resampling); both
steps stream through GDAL's block cache, capped by ``GDAL_CACHEMAX``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
import rasterio.shutil

from geoseg.io.grid import Grid
from geoseg.utils.outputs import temp_name

__all__ = ["StreamingCOG", "OverviewResampling", "BLOCK", "GDAL_CACHE_BYTES", "temp_sibling"]

BLOCK = 512
GDAL_CACHE_BYTES = 64 * 2**20  # bounded block cache while writing/converting
OverviewResampling = Literal["mode", "nearest", "average"]


def temp_sibling(final: Path, tag: str) -> Path:
    """A hidden temporary path beside ``final`` (same filesystem: renames are atomic)."""
    return temp_name(final, tag)


class StreamingCOG:
    """Write a single-band raster on ``grid`` row block by row block, then make it a COG.

    Args:
        grid: the output grid (CRS, transform, shape), written exactly.
        dtype: numpy dtype name of the band (``uint8`` for classes and confidence).
        nodata: the nodata value.
        scratch: the temporary tiled GTiff (deleted by :meth:`close`).
        description: band description.
        units: band unit (e.g. ``%``).
        tags: dataset tags (copied into the COG).
        band_tags: band 1 metadata (copied into the COG).
        colormap: pixel value → RGBA palette (makes the band ``PaletteIndex``).
        overviews: overview resampling (``mode``/``nearest`` for classes).
    """

    def __init__(
        self,
        grid: Grid,
        scratch: Path,
        *,
        dtype: str = "uint8",
        nodata: float | None = 0,
        description: str | None = None,
        units: str | None = None,
        tags: Mapping[str, str] | None = None,
        band_tags: Mapping[str, str] | None = None,
        colormap: Mapping[int, tuple[int, int, int, int]] | None = None,
        overviews: OverviewResampling = "mode",
    ):
        self.grid, self.scratch, self.dtype, self.overviews = grid, Path(scratch), np.dtype(dtype), overviews
        profile = {
            "driver": "GTiff", "width": grid.width, "height": grid.height, "count": 1, "dtype": dtype,
            "crs": grid.crs, "transform": grid.affine, "nodata": nodata, "tiled": True,
            "blockxsize": BLOCK, "blockysize": BLOCK, "bigtiff": "if_safer",  # scratch: uncompressed
        }
        self._env = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES)
        with self._env:
            self._ds = rasterio.open(self.scratch, "w", **profile)
        if description:
            self._ds.set_band_description(1, description)
        if units:
            self._ds.set_band_unit(1, units)
        if tags:
            self._ds.update_tags(**tags)
        if band_tags:
            self._ds.update_tags(1, **band_tags)
        if colormap:
            self._ds.write_colormap(1, dict(colormap))
        self._strip = np.zeros((min(BLOCK, grid.height), grid.width), dtype=self.dtype)
        self._strip_top = 0  # scene row of strip row 0
        self._rows = 0  # rows received so far

    def write(self, row_off: int, rows: np.ndarray) -> None:
        """Append full-width ``rows`` starting at scene row ``row_off`` (must be the next row)."""
        if row_off != self._rows:
            raise ValueError(f"rows must arrive in order: expected row {self._rows}, got {row_off}")
        if rows.ndim != 2 or rows.shape[1] != self.grid.width:
            raise ValueError(f"expected (h, {self.grid.width}) rows, got {rows.shape}")
        done = 0
        while done < rows.shape[0]:
            at = self._rows - self._strip_top
            n = min(rows.shape[0] - done, self._strip.shape[0] - at)
            self._strip[at : at + n] = rows[done : done + n]
            self._rows += n
            done += n
            if self._rows - self._strip_top == self._strip.shape[0] or self._rows == self.grid.height:
                self._write_strip()

    def _write_strip(self) -> None:
        n = self._rows - self._strip_top
        window = rasterio.windows.Window(0, self._strip_top, self.grid.width, n)
        with self._env:
            self._ds.write(self._strip[:n], 1, window=window)
        self._strip_top = self._rows

    def finish(self, dest: Path) -> Path:
        """Convert the completed raster into the COG ``dest`` (written by GDAL's COG driver)."""
        if self._rows != self.grid.height:
            raise ValueError(f"only {self._rows} of {self.grid.height} rows were written")
        self._ds.close()
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES, GDAL_NUM_THREADS="ALL_CPUS"):
            rasterio.shutil.copy(
                self.scratch, dest, driver="COG", BLOCKSIZE=BLOCK, COMPRESS="DEFLATE", LEVEL=6,
                OVERVIEW_RESAMPLING=self.overviews.upper(), BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS",
            )
        return Path(dest)

    def close(self) -> None:
        """Close and delete the scratch file (idempotent; also after errors)."""
        with contextlib.suppress(Exception):
            if not self._ds.closed:
                self._ds.close()
        for leftover in (self.scratch, Path(f"{self.scratch}.aux.xml")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
