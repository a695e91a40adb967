"""Raster grids and windows. Pixel ↔ CRS conversions go only through the affine transform."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike

from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

__all__ = ["Grid", "iter_blocks"]


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: CRS (WKT), affine transform, width and height."""

    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int

    @classmethod
    def from_dataset(cls, ds, path: str | PathLike[str] | None = None) -> Grid:
        """The grid of an open rasterio dataset; ``path`` (as the user wrote it) names it in errors.

        Raises:
            CRSMismatchError: The raster has no CRS.
        """
        if not ds.crs:  # None, or an empty CRS: a raster without georeferencing
            from geoseg.errors import CRSMismatchError

            name = ds.name if path is None else str(path)
            raise CRSMismatchError(
                "raster has no CRS (it is not georeferenced)", path=name,
                hint="geoseg needs the scene's projected (UTM) CRS: set it, e.g. "
                f"gdal_edit.py -a_srs EPSG:326xx {name} (326xx = WGS 84 / UTM zone xx north, 327xx south)",
            )
        return cls(ds.crs.to_wkt(), tuple(ds.transform)[:6], ds.width, ds.height)

    @property
    def affine(self) -> Affine:
        """The pixel → CRS affine transform."""
        return Affine(*self.transform)

    @property
    def crs(self) -> CRS:
        """The coordinate reference system."""
        return CRS.from_wkt(self.crs_wkt)

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units, positive."""
        a = self.affine
        return abs(a.a), abs(a.e)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.height, self.width

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        a = self.affine
        x0, y0 = a @ (0, 0)
        x1, y1 = a @ (self.width, self.height)
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

    def with_resolution(self, resolution: float) -> Grid:
        """The grid covering the same extent with square pixels of ``resolution``."""
        left, bottom, right, top = self.bounds
        width = round((right - left) / resolution)
        height = round((top - bottom) / resolution)
        return Grid(self.crs_wkt, (resolution, 0.0, left, 0.0, -resolution, top), width, height)

    def window_transform(self, window: Window) -> Affine:
        """The pixel → CRS transform of ``window``."""
        return self.affine @ Affine.translation(window.col_off, window.row_off)

    def window_bounds(self, window: Window) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of ``window`` in CRS units."""
        sub = Grid(self.crs_wkt, tuple(self.window_transform(window))[:6], int(window.width), int(window.height))
        return sub.bounds

    def same_as(self, other: Grid, tol: float = 1e-6) -> bool:
        """Same CRS, same shape and transforms equal within ``tol`` (CRS units)."""
        return (
            self.shape == other.shape
            and self.crs == other.crs
            and all(abs(a - b) <= tol for a, b in zip(self.transform, other.transform, strict=True))
        )


def iter_blocks(height: int, width: int, block: int) -> Iterator[Window]:
    """Row-major, non-overlapping windows of at most ``block`` × ``block`` covering the grid."""
    for row in range(0, height, block):
        for col in range(0, width, block):
            yield Window(col, row, min(block, width - col), min(block, height - row))
