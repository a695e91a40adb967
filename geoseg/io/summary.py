"""What ``geoseg inspect`` reports about a scene: from a decimated sample, or from every pixel.

Two ways to compute the same figures (valid fraction, SCL class shares, reflectance
statistics of every band over the valid pixels):

* **every pixel** (``sample=False``, :func:`summarise_scene`'s default and ``inspect --full``):
  block by block through :mod:`geoseg.io.reader`, exactly as the feature stack reads the scene
  (bilinear bands on the scene grid, nodata, SCL and mask rule). Memory is bounded by the
  block, time grows with the scene.
* **a sample** (``sample=True``, ``inspect``'s default), in one of two ways:

  - *decimated*: the scene grid decimated by a power of two ``k`` until its long side is at
    most ``max_side`` px; one sample point per ``k`` x ``k`` cell (its centre). Each band file is
    read once at that reduced size (GDAL uses the file's overviews or JPEG 2000 resolution
    levels where it has them, else a nearest decimated read); class layers (SCL, external mask)
    are read at full resolution strip by strip and sampled with nearest, because their
    overviews may be averaged (a JPEG 2000 level of an SCL holds classes such as 14 that do
    not exist). Memory holds the sample and one strip, whatever the scene size.
  - *windows*: where that would decode more than ``decimate_limit`` pixels at full resolution
    (band files without usable overviews, plus the class layers: a 10980² GeoTIFF tile without
    overviews holds ~670 million), a decimated read costs as much as decompressing every
    tile. A fixed grid of ``n`` x ``n`` windows of ``s`` x ``s`` px spread evenly over the scene
    (each in the middle of a cell of ``2 s`` px, so each lies in one internal block of typical tiled files)
    is read instead, exactly as the full pass reads its blocks: a few percent of the tiles are
    decompressed. The windows are clusters of pixels, so the figures vary more than those of
    a decimated sample of as many points (the benchmark compares them with ``--full``).

  A scene no larger than ``max_side`` is read in full (the sample is every pixel).

Percentiles are computed in both modes from a histogram with bins of 1e-4 reflectance (one DN
of Sentinel-2): the reported value is the lower edge of the bin holding the percentile, which
for integer DN on the scene grid is the exact ``inverted_cdf`` percentile.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from geoseg.io.grid import iter_blocks
from geoseg.io.radiometry import dn_to_reflectance_units
from geoseg.io.raster import GDAL_ENV, BandFile, open_raster, reading
from geoseg.io.reader import read_raw, read_scl, read_valid
from geoseg.io.resample import _invalid
from geoseg.io.scene import Scene
from geoseg.io.sensors import REFLECTANCE_SCALE, SCL_CLASSES

if TYPE_CHECKING:
    from geoseg.utils.progress import Progress

__all__ = ["BandStats", "SampleInfo", "SceneSummary", "summarise_scene", "DEFAULT_MAX_SIDE", "CACHE_BYTES",
           "DECIMATE_LIMIT", "SAMPLE_WINDOWS"]

DEFAULT_MAX_SIDE = 2048  # long side of the sample grid, px (a 10980 px tile: 1/8, 1373 x 1373 px)
# above this many pixels decoded at full resolution, the sample reads windows (a 10980² tile's
# band files without overviews: ~670 million; the real 60 m L2A product of the tests: ~67 million)
DECIMATE_LIMIT = 100_000_000
SAMPLE_WINDOWS = (16, 64)  # windows per side, window side (px): 256 windows, ~1 million px (0.9 % of a tile)
PERCENTILES = (2, 50, 98)
# GDAL's block cache during a summary, in bytes (its default, 5 % of RAM, fills with decoded
# blocks of a large scene): memory stays flat whatever the scene size
CACHE_BYTES = 64 * 2**20
_STRIP_BYTES = 32 * 2**20  # at most this much of a class layer is held at full resolution
# histogram of reflectance x 10000 (1 DN of Sentinel-2 per bin); values outside fall into the end bins
_LO, _HI = -20000, 70000


@dataclass(frozen=True)
class BandStats:
    """Reflectance of one band over the valid pixels (or valid sample points)."""

    count: int
    mean: float
    std: float
    percentiles: Mapping[int, float]  # {2: p2, 50: median, 98: p98}, lower bin edges of 1e-4


@dataclass(frozen=True)
class SampleInfo:
    """How a sampled summary was read.

    Decimated: one point per ``factor`` x ``factor`` cell of the scene grid, ``height`` x ``width``
    points. Windows (``windows`` > 0): every pixel of ``windows`` windows of ``height`` x ``width``
    px (``factor`` 1).
    """

    factor: int
    height: int
    width: int
    overviews: tuple[str, ...] = ()  # bands read from overviews / JPEG 2000 resolution levels
    windows: int = 0

    @property
    def points(self) -> int:
        """Sample points (pixels of the scene grid) the figures come from."""
        return max(1, self.windows) * self.height * self.width


@dataclass
class SceneSummary:
    """What ``geoseg inspect`` reports about a scene (see :func:`summarise_scene`).

    ``sample`` is None when every pixel was read.
    """

    scene: Scene
    valid_fraction: float
    scl_shares: dict[int, float] = field(default_factory=dict)
    band_stats: dict[str, BandStats] = field(default_factory=dict)
    sample: SampleInfo | None = None

    def lines(self) -> list[str]:
        """The report of ``geoseg inspect``, one string per line."""
        s, g = self.scene, self.scene.grid
        left, bottom, right, top = g.bounds
        out = [
            f"scene       {s.scene_id}  ({s.path})",
            f"layout      {s.layout}   level {s.level}   acquired {s.datetime or 'unknown'}",
            f"CRS         {g.crs.to_string()}",
            f"grid        {g.width} x {g.height} px at {g.resolution[0]:g} m",
            f"bounds      left {left:.1f}  bottom {bottom:.1f}  right {right:.1f}  top {top:.1f}",
            f"offset      {s.offset.offset:+g} DN  [{s.offset.source}] {s.offset.detail}",
            *([f"scale       {s.scale:g} DN per unit reflectance (stated; Sentinel-2 DN: 10000)"]
              if s.scale != REFLECTANCE_SCALE else []),
            "bands       " + "  ".join(f"{b}@{f.resolution:g}m" for b, f in s.bands.items()),
            f"SCL         {f'{s.scl.resolution:g} m' if s.scl else 'none'}"
            + (f"   invalid classes {list(s.invalid_scl)}" if s.scl else ""),
            f"mask        {s.mask.path if s.mask else 'none'}",
            f"read        {self.describe_read()}",
            f"valid       {100 * self.valid_fraction:.2f} % of pixels" + (" (of the sample)" if self.sample else ""),
        ]
        if self.scl_shares:
            out.append("SCL classes")
            for code, share in sorted(self.scl_shares.items()):
                flag = "invalid" if code in s.invalid_scl else ""
                out.append(f"  {code:>3} {SCL_CLASSES.get(code, '?'):<26} {100 * share:6.2f} %  {flag}")
        if self.band_stats:
            out.append("reflectance of valid pixels   " + "".join(f"{h:>9}" for h in
                                                                 ("mean", "std", *(f"p{p}" for p in PERCENTILES))))
            for name, st in self.band_stats.items():
                if not st.count:
                    out.append(f"  {name:<28}no valid pixels")
                    continue
                values = [st.mean, st.std, *(st.percentiles[p] for p in PERCENTILES)]
                out.append(f"  {name:<28}" + "".join(f"{v:9.4f}" for v in values))
        return out

    def describe_read(self) -> str:
        """One line: every pixel, or which sample the figures come from."""
        g = self.scene.grid
        if self.sample is None:
            return f"every pixel ({g.width} x {g.height} px)"
        smp, s = self.sample, self.scene
        if smp.windows:
            share = 100 * smp.points / (g.width * g.height)
            return (f"statistics from a sample of {smp.windows} windows of {smp.width} x {smp.height} px spread over "
                    f"the scene ({share:.1f} % of its pixels; its files have no overviews to read a decimated "
                    "sample from); --full reads every pixel")
        k = smp.factor
        if smp.overviews and len(smp.overviews) == len(s.bands):
            bands = "bands from their overviews"
        elif smp.overviews:
            bands = f"{', '.join(smp.overviews)} from overviews, the other bands decimated"
        else:
            bands = "bands decimated (no overviews)"
        classes = " and ".join(n for n, layer in (("SCL", s.scl), ("mask", s.mask)) if layer is not None)
        if classes:
            bands += f"; {classes} at full resolution"
        return (f"statistics from a 1/{k} sample: {smp.width} x {smp.height} px, one per {k} x {k} px "
                f"({bands}); --full reads every pixel")


class _Stats:
    """Running count, mean, variance and histogram of one band's reflectance x 10000."""

    def __init__(self, offset: float, scale: float):
        self.offset, self.scale = float(offset), float(scale)
        self.count, self.mean, self.m2 = 0, 0.0, 0.0
        self.hist = np.zeros(_HI - _LO, dtype=np.int64)

    def add(self, dn: np.ndarray) -> None:
        """Add the DN of valid pixels (any shape, any numeric dtype)."""
        if not dn.size:
            return
        u = dn_to_reflectance_units(dn, self.offset, self.scale, REFLECTANCE_SCALE).ravel()  # reflectance x 10000
        n, mean = u.size, float(u.mean())
        m2 = float(np.square(u - mean).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total  # Chan et al.: blocks combined without cancellation
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        bins = np.clip(np.floor(u), _LO, _HI - 1).astype(np.int64) - _LO
        lo = int(bins.min())  # counted over the range present: a small block costs no full-length pass
        counts = np.bincount(bins - lo)
        self.hist[lo:lo + counts.size] += counts

    def result(self) -> BandStats:
        if not self.count:
            return BandStats(0, math.nan, math.nan, {p: math.nan for p in PERCENTILES})
        cum = np.cumsum(self.hist)
        pct = {p: float(np.searchsorted(cum, p / 100 * self.count) + _LO) / REFLECTANCE_SCALE for p in PERCENTILES}
        return BandStats(self.count, self.mean / REFLECTANCE_SCALE,
                         math.sqrt(self.m2 / self.count) / REFLECTANCE_SCALE, pct)


def summarise_scene(scene: Scene, block: int = 1024, *, sample: bool = False, max_side: int = DEFAULT_MAX_SIDE,
                    progress: bool | Callable[[int, int], None] = False, decimate_limit: int = DECIMATE_LIMIT,
                    windows: tuple[int, int] = SAMPLE_WINDOWS) -> SceneSummary:
    """Valid fraction, SCL class shares and per-band reflectance statistics of ``scene``.

    Args:
        scene: an opened scene (:func:`geoseg.io.open_scene`).
        block: block side (px) of the full pass; the figures do not depend on it, memory does.
        sample: False (the default, as before this option existed): read every pixel, exactly.
            True: a decimated sample with flat memory (``geoseg inspect`` without ``--full``);
            see the module documentation for how it is read.
        max_side: long side (px) of the sample grid; a scene no larger is read in full.
        progress: report the reading (blocks of the full pass, files or windows of the sample)
            with :func:`~geoseg.utils.progress.track_progress` (a bar on a terminal, plain lines
            otherwise), or a callable ``(done, total)`` called per block, file or window.
        decimate_limit: the sample reads windows instead of a decimated sample when that would
            decode more pixels than this at full resolution.
        windows: (windows per side, window side in px) of the windowed sample.
    """
    with rasterio.Env(GDAL_CACHEMAX=CACHE_BYTES):  # restored on exit
        factor = _sample_factor(scene.grid.shape, max_side) if sample else 1
        if factor > 1 and _full_resolution_pixels(scene, factor) > decimate_limit:
            return _windowed(scene, *windows, progress)
        if factor > 1:
            return _sampled(scene, factor, progress)
        return _full(scene, block, progress)


def _sample_factor(shape: tuple[int, int], max_side: int) -> int:
    factor = 1
    while -(-max(shape) // factor) > max(1, max_side):
        factor *= 2
    return factor


# --------------------------------------------------------------------------- every pixel (of some windows)
def _full(scene: Scene, block: int, progress: bool | Callable[[int, int], None]) -> SceneSummary:
    return _read_windows(scene, list(iter_blocks(*scene.grid.shape, block)), progress, "block")


def _windowed(scene: Scene, per_side: int, side: int, progress: bool | Callable[[int, int], None]) -> SceneSummary:
    """Every pixel of a fixed grid of windows spread over the scene (see the module documentation)."""
    windows = _window_grid(scene.grid.shape, per_side, side)
    summary = _read_windows(scene, windows, progress, "window", workers=max(1, min(4, os.cpu_count() or 1)))
    size = int(windows[0].height)
    summary.sample = SampleInfo(1, size, size, windows=len(windows))
    return summary


def _window_grid(shape: tuple[int, int], per_side: int, side: int) -> list[Window]:
    """``per_side`` x ``per_side`` square windows evenly spread over ``shape``.

    Each window is the middle half of a cell of ``2 side`` px, cells counted from the grid's
    origin: in a tiled file whose blocks are a multiple of the cell (a 10 m band in 256 px blocks
    and ``side`` 128, a 20 m band in 256 px blocks at any ``side`` up to 128), a window and the
    margin of its bilinear read lie in one block, so each window decompresses one block per file.
    """
    h, w = shape
    side = max(1, min(side, h // (2 * per_side), w // (2 * per_side)))
    cell = 2 * side

    def origins(size: int) -> list[int]:
        cells = size // cell
        return sorted({int((i + 0.5) * cells / per_side) * cell + side // 2 for i in range(per_side)})

    return [Window(col, row, side, side) for row in origins(h) for col in origins(w)]


def _read_windows(scene: Scene, windows: Sequence[Window], progress: bool | Callable[[int, int], None],
                  unit: str, workers: int = 1) -> SceneSummary:
    """The figures over every pixel of ``windows``, read as the feature stack reads them.

    With ``workers`` > 1, windows are read by a thread pool (GDAL decodes outside the GIL);
    the figures are added in window order all the same.
    """
    total = valid = 0
    counts = np.zeros(256, dtype=np.int64)
    bands = list(scene.bands)
    stats = {b: _Stats(scene.offset.offset, scene.scale) for b in bands}

    def read(window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        # read_window's reading, without its float64 reflectance copies: the same valid mask
        raw, invalid = read_raw(scene, window, bands)
        return raw, read_valid(scene, window, invalid), read_scl(scene, window)

    with ThreadPoolExecutor(workers) as pool, _progress(progress, len(windows), unit) as bar:
        pending = list(windows)
        while pending:  # at most 2 x workers windows in flight: memory stays bounded by the window size
            batch, pending = pending[:2 * workers], pending[2 * workers:]
            for raw, ok, scl in pool.map(read, batch):
                valid += int(ok.sum())
                total += ok.size
                for j, name in enumerate(bands):
                    stats[name].add(raw[j][ok])
                if scl is not None:
                    counts += np.bincount(scl.ravel().astype(np.int64), minlength=256)[:256]
                bar.update()
    shares = {int(c): float(n / total) for c, n in enumerate(counts) if n}
    return SceneSummary(scene, valid / max(total, 1), shares, {b: s.result() for b, s in stats.items()})


def _full_resolution_pixels(scene: Scene, factor: int) -> int:
    """Pixels a decimated sample would decode at full resolution: band files without usable overviews, class layers."""
    sh, sw = (-(-n // factor) for n in scene.grid.shape)
    total = 0
    for members in _by_file(scene, list(scene.bands)).values():
        with rasterio.Env(**GDAL_ENV), open_raster(members[0][1].path) as ds:
            if not _uses_overviews(ds, [b.index for _, b in members], sh, sw):
                total += ds.width * ds.height
    return total + sum(layer.grid.width * layer.grid.height for layer in (scene.scl, scene.mask) if layer)


def _uses_overviews(ds, indexes: Sequence[int], sh: int, sw: int) -> bool:
    """Whether GDAL reads ``indexes`` of ``ds`` at ``sh`` x ``sw`` from overviews (JPEG 2000 levels)."""
    return any(ds.overviews(i) for i in indexes) and max(ds.width / sw, ds.height / sh) >= 2


def _progress(progress: bool | Callable[[int, int], None], total: int, unit: str) -> Progress:
    """The reading's progress: shown (a terminal bar disappears once done: the summary follows), or a callable's."""
    # imported here, not with the module: it imports dask
    from geoseg.utils.progress import CallbackProgress, track_progress

    if callable(progress):
        return CallbackProgress(total, progress)
    return track_progress(total, "inspect", unit, enabled=progress, leave=False)


# --------------------------------------------------------------------------- a decimated sample
def _sampled(scene: Scene, factor: int, progress: bool | Callable[[int, int], None]) -> SceneSummary:
    h, w = scene.grid.shape
    sh, sw = -(-h // factor), -(-w // factor)
    bands = list(scene.bands)
    groups = list(_by_file(scene, bands).values())
    classes = [layer for layer in (scene.scl, scene.mask) if layer is not None]

    def read_bands(members: list[tuple[str, BandFile]]) -> tuple[np.ndarray, bool]:
        path = members[0][1].path
        indexes = [b.index for _, b in members]
        with rasterio.Env(**GDAL_ENV), open_raster(path) as ds, reading(path, "a decimated sample of the file"):
            data = ds.read(indexes, out_shape=(len(indexes), sh, sw), resampling=Resampling.nearest)
            overviews = _uses_overviews(ds, indexes, sh, sw)
        return data, overviews

    def read_classes(layer: BandFile) -> np.ndarray:
        with rasterio.Env(**GDAL_ENV):
            return _class_sample(layer, sh, sw)

    # one file per task (GDAL decodes on one thread per read)
    workers = max(1, min(4, os.cpu_count() or 1, len(groups) + len(classes)))
    with ThreadPoolExecutor(workers) as pool, _progress(progress, len(groups) + len(classes), "file") as bar:
        class_futures = [pool.submit(read_classes, layer) for layer in classes]
        band_futures = [pool.submit(read_bands, members) for members in groups]
        every: list[Future[Any]] = [*class_futures, *band_futures]
        for future in as_completed(every):
            future.result()  # the first failed file fails the summary at once
            bar.update()
        band_data = [f.result() for f in band_futures]
        class_data = [f.result() for f in class_futures]
    invalid = np.zeros((sh, sw), dtype=bool)
    values: dict[str, np.ndarray] = {}
    from_overviews: list[str] = []
    for members, (data, overviews) in zip(groups, band_data, strict=True):
        invalid |= _invalid(data, members[0][1].nodata)
        for (name, _), arr in zip(members, data, strict=True):
            values[name] = arr
            if overviews:
                from_overviews.append(name)
    layers = dict(zip((id(layer) for layer in classes), class_data, strict=True))
    scl = layers.get(id(scene.scl)) if scene.scl is not None else None
    if scl is not None:
        invalid |= np.isin(scl, scene.invalid_scl)
    if scene.mask is not None:
        ext = layers[id(scene.mask)]
        invalid |= (ext != 0) | _invalid(ext[None], None)
    ok = ~invalid
    stats = {}
    for name in bands:
        acc = _Stats(scene.offset.offset, scene.scale)
        acc.add(values[name][ok])
        stats[name] = acc.result()
    shares: dict[int, float] = {}
    if scl is not None:
        counts = np.bincount(scl.ravel().astype(np.int64), minlength=256)[:256]
        shares = {int(c): float(n / scl.size) for c, n in enumerate(counts) if n}
    info = SampleInfo(factor, sh, sw, tuple(b for b in bands if b in from_overviews))
    return SceneSummary(scene, float(ok.mean()), shares, stats, info)


def _by_file(scene: Scene, bands: Sequence[str]) -> dict[str, list[tuple[str, BandFile]]]:
    groups: dict[str, list[tuple[str, BandFile]]] = {}
    for name in bands:
        groups.setdefault(scene.bands[name].path, []).append((name, scene.bands[name]))
    return groups


def _centres(sample: int, size: int) -> np.ndarray:
    """Source pixel holding the centre of each of ``sample`` equal cells over ``size`` pixels (GDAL's nearest)."""
    return np.minimum(((np.arange(sample) + 0.5) * size / sample).astype(np.int64), size - 1)


def _class_sample(layer: BandFile, sh: int, sw: int) -> np.ndarray:
    """A class layer at the sample points, read at full resolution strip by strip (never from overviews)."""
    with open_raster(layer.path) as ds, reading(layer.path, "a decimated sample of the file"):
        rows, cols = _centres(sh, ds.height), _centres(sw, ds.width)
        out = np.empty((sh, sw), dtype=ds.dtypes[layer.index - 1])
        block_h = ds.block_shapes[layer.index - 1][0]
        itemsize = np.dtype(ds.dtypes[layer.index - 1]).itemsize
        for r0, r1, sel in _strips(rows, ds.height, ds.width * itemsize, block_h):
            if block_h == 1:  # a stripped file: only the sampled rows
                for i in sel:
                    out[i] = ds.read(layer.index, window=Window(0, int(rows[i]), ds.width, 1))[0, cols]
                continue
            strip = ds.read(layer.index, window=Window(0, r0, ds.width, r1 - r0))
            out[sel] = strip[rows[sel] - r0][:, cols]
    return out


def _strips(rows: np.ndarray, height: int, row_bytes: int, block_h: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Row ranges (whole blocks, at most ~32 MB) holding sample rows, and the indices of those rows."""
    step = max(block_h, (_STRIP_BYTES // max(row_bytes, 1)) // max(block_h, 1) * max(block_h, 1))
    for r0 in range(0, height, step):
        sel = np.flatnonzero((rows >= r0) & (rows < r0 + step))
        if sel.size:
            yield int(rows[sel[0]]), int(rows[sel[-1]]) + 1, sel
