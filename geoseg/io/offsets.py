"""The radiometric offset of reflectance = (DN + offset) / scale (:mod:`geoseg.io.radiometry`).

Where the offset comes from, in order of precedence:

1. ``catalog``: an explicit per-scene value in ``data_catalog.yaml`` (``offset: -1000``).
2. ``metadata``: the product says so — ``BOA_ADD_OFFSET`` (L2A) or ``RADIO_ADD_OFFSET`` (L1C)
   in a SAFE's ``MTD_MSIL*.xml`` or in the GeoTIFF tags; or a processing baseline ≥ 04.00
   recorded without an explicit offset (then −1000, the ESA convention).
3. ``inferred``: a file with no metadata at all. Rule (documented in docs/offsets.md): read a
   decimated copy of the reflectance bands (:func:`sample_bands`); if the darkest band's 1st percentile of valid DN
   is ≥ 800, the +1000 offset is present and −1000 is applied, otherwise 0. Surface
   reflectance below 0.08 exists in every ordinary scene (water, shadow, SWIR of vegetation
   or snow), so offset data sit near or above DN 1000 in every band and plain data do not.
   The terramind samples show why a per-file rule is needed: the same provider shipped
   files with and without the offset.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from geoseg.errors import ScaleError
from geoseg.io.radiometry import dn_to_reflectance
from geoseg.io.raster import GDAL_ENV, BandFile, open_raster, reading
from geoseg.io.sensors import OFFSET_BASELINE, REFLECTANCE_SCALE

__all__ = ["OffsetDecision", "offset_from_tags", "offset_from_safe_xml", "sample_bands", "infer_offset",
           "check_scale", "INFER_THRESHOLD_DN"]

INFER_THRESHOLD_DN = 800
_OFFSET_KEYS = ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET", "ADD_OFFSET")


@dataclass(frozen=True)
class OffsetDecision:
    """The offset applied to a scene and why (shown by ``geoseg inspect``)."""

    offset: float
    source: str  # "catalog" | "metadata" | "inferred" | "none"
    detail: str = ""


def _baseline_offset(baseline: str | None) -> float | None:
    if not baseline:
        return None
    match = re.match(r"\s*(\d+)\.(\d+)", baseline)
    if not match:
        return None
    return float(OFFSET_BASELINE) if int(match.group(1)) >= 4 else 0.0


def offset_from_tags(tags: Mapping[str, str]) -> OffsetDecision | None:
    """An offset stated in GeoTIFF tags (dataset or band level), if any."""
    upper = {k.upper(): v for k, v in tags.items()}
    for key in _OFFSET_KEYS:
        if key in upper:
            return OffsetDecision(float(upper[key]), "metadata", f"{key}={upper[key]} tag")
    baseline = upper.get("PROCESSING_BASELINE")
    value = _baseline_offset(baseline)
    if value is not None:
        return OffsetDecision(value, "metadata", f"processing baseline {baseline}")
    return None


def offset_from_safe_xml(xml_path: Path, data: bytes | None = None) -> tuple[OffsetDecision | None, dict[str, str]]:
    """Parse a SAFE product's MTD_MSIL1C/2A.xml (or its ``data``, read from a zip): the offset and a few facts."""
    root = ET.fromstring(data) if data is not None else ET.parse(xml_path).getroot()
    facts: dict[str, str] = {}
    offsets: list[float] = []
    for el in root.iter():
        tag = el.tag.split("}")[-1]
        if tag in ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET") and el.text:
            offsets.append(float(el.text))
            facts.setdefault("offset_key", tag)
        elif tag in ("PROCESSING_BASELINE", "PRODUCT_TYPE", "PRODUCT_START_TIME", "SPACECRAFT_NAME") and el.text:
            facts.setdefault(tag, el.text.strip())
    if offsets:
        distinct = sorted(set(offsets))
        if len(distinct) > 1:
            detail = f"per-band {facts['offset_key']} differ ({distinct}); using {offsets[0]}"
        else:
            detail = f"{facts['offset_key']}={distinct[0]:g} in {xml_path.name}"
        return OffsetDecision(offsets[0], "metadata", detail), facts
    value = _baseline_offset(facts.get("PROCESSING_BASELINE"))
    if value is not None:
        return OffsetDecision(value, "metadata", f"processing baseline {facts['PROCESSING_BASELINE']}"), facts
    return None, facts


def sample_bands(layers: Mapping[str, BandFile], max_size: int = 512) -> dict[str, np.ndarray]:
    """A decimated read (at most ``max_size`` px a side, nearest) of each layer: values as float64 by name.

    The samples feed :func:`infer_offset` and :func:`check_scale`. Reading every file of a
    scene this way (the SCL and mask layers too) also refuses a damaged file before any work
    starts: the first failure, in the order of ``layers``, is raised as a ``CorruptRasterError``.

    A large tiled file without overviews (more than 16 pixels per sample point) would have
    every internal block decompressed by a decimated read; it is sampled from an evenly spaced
    grid of its blocks instead (:func:`_block_sample`), which includes its last block, where a cut
    download is missing data.
    """

    def read(band: BandFile) -> np.ndarray:
        # one GDAL thread per read: a failed JPEG 2000 read is then reported, not zero-filled
        with rasterio.Env(**GDAL_ENV), open_raster(band.path) as ds, reading(band.path, "a sample of the file"):
            factor = max(1, int(np.ceil(max(ds.width, ds.height) / max_size)))
            if factor > 4 and not ds.overviews(band.index) and ds.block_shapes[band.index - 1][0] > 1:
                return _block_sample(ds, band.index, max_size)
            shape = (max(1, ds.height // factor), max(1, ds.width // factor))
            return ds.read(band.index, out_shape=shape, resampling=Resampling.nearest)

    names, files = list(layers), list(layers.values())
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1, len(files)))) as pool:
        data = list(pool.map(read, files))
    return {name: arr.astype(np.float64) for name, arr in zip(names, data, strict=True)}


def _block_sample(ds, index: int, max_size: int, per_side: int = 8) -> np.ndarray:
    """About ``max_size``² values of band ``index`` from ``per_side`` x ``per_side`` evenly spaced internal
    blocks and the last block, each read whole (one block to decompress) and thinned by a stride."""
    bh, bw = ds.block_shapes[index - 1]
    rows, cols = -(-ds.height // bh), -(-ds.width // bw)
    picks = {(int((i + 0.5) * rows / per_side), int((j + 0.5) * cols / per_side))
             for i in range(per_side) for j in range(per_side)} | {(rows - 1, cols - 1)}
    stride = max(1, int(np.sqrt(len(picks) * bh * bw / max_size**2)))
    parts = []
    for r, c in sorted(picks):
        window = Window(c * bw, r * bh, min(bw, ds.width - c * bw), min(bh, ds.height - r * bh))
        parts.append(ds.read(index, window=window)[::stride, ::stride].ravel())
    return np.concatenate(parts)


def _valid_values(arr: np.ndarray, nodata: float | None) -> np.ndarray:
    values = arr[np.isfinite(arr)]
    if nodata is not None and not np.isnan(nodata):
        values = values[values != nodata]
    return values


def infer_offset(samples: Mapping[str, np.ndarray], nodata: float | None = 0,
                 scale: float = REFLECTANCE_SCALE) -> OffsetDecision:
    """Decide from the data whether the +1000 DN offset is present (rule in the module doc).

    Args:
        samples: band name → decimated DN array of that band (:func:`sample_bands`).
        nodata: DN value to ignore.
        scale: DN per unit reflectance of the file (threshold and offset scale with it; the
            rule is stated for the standard 10000).
    """
    lows: dict[str, float] = {}
    for band, arr in samples.items():
        values = _valid_values(arr, nodata)
        if values.size:
            lows[band] = float(np.percentile(values, 1))
    if not lows:
        return OffsetDecision(0.0, "inferred", "no valid pixels to infer from; assuming no offset")
    darkest = min(lows, key=lows.__getitem__)
    low = lows[darkest]
    factor = scale / REFLECTANCE_SCALE
    threshold = INFER_THRESHOLD_DN * factor
    fmt = ".0f" if factor == 1 else ".4g"
    if low >= threshold:
        detail = f"no metadata; darkest band {darkest} 1st percentile DN {low:{fmt}} >= {threshold:{fmt}}"
        return OffsetDecision(float(OFFSET_BASELINE) * factor, "inferred", detail)
    detail = f"no metadata; darkest band {darkest} 1st percentile DN {low:{fmt}} < {threshold:{fmt}}"
    return OffsetDecision(0.0, "inferred", detail)


# Plausible reflectance of valid pixels (after offset and scale). Real scenes have bright
# pixels (land, clouds, the blue bands' path radiance): the 99th percentile of all bands is
# 0.1-1 even over water. Data stored at another scale land far outside: reflectance x 100
# (DN / 100) gives ~0.005, reflectance 0-1 read as DN ~0.0001, and DN x 10 a median above 1.5.
MIN_REFLECTANCE_P99 = 0.03
MAX_REFLECTANCE_MEDIAN = 1.5
_SCALE_FIX = ("state how the file stores reflectance: --scale 1 for reflectance 0-1, --scale 100 for "
              "reflectance x 100 (catalog: scale: 1); Sentinel-2 digital numbers are 0-10000+ with "
              "reflectance x 10000 (the default)")


def check_scale(samples: Mapping[str, np.ndarray], offset: float, scale: float, nodata: float | None,
                path: str, files: Mapping[str, tuple[str, str]] | None = None) -> None:
    """Refuse data whose valid values are not reflectance x ``scale`` (a wrong or unstated scale).

    Args:
        samples: band name → decimated DN array (as read for :func:`infer_offset`).
        offset, scale: the scene's radiometry, reflectance = (DN + offset) / scale.
        nodata: DN value to ignore.
        path: the scene (named in the message when the whole scene is off).
        files: band name → (file, dtype); a floating-point band file holding reflectance 0-1
            in a scene read at the standard scale is refused by name.

    Raises:
        ScaleError: the message says what was found and how to state the scale.
    """
    pooled = [_valid_values(arr, nodata) for arr in samples.values()]
    values = np.concatenate(pooled) if pooled else np.empty(0)
    if values.size == 0:
        return  # nothing valid to judge (an all-nodata scene is reported elsewhere)
    median, p99 = (float(v) for v in np.percentile(values, [50, 99]))
    r_median, r_p99 = (float(dn_to_reflectance(v, offset, scale)) for v in (median, p99))
    found = (f"median valid value {median:.4g}, 99th percentile {p99:.4g}, i.e. reflectance {r_median:.3g} / "
             f"{r_p99:.3g} at scale {scale:g} and offset {offset:+g}")
    if r_p99 < MIN_REFLECTANCE_P99:
        raise ScaleError(f"values too small for the reflectance scale: {found}", path=path, hint=_SCALE_FIX)
    if r_median > MAX_REFLECTANCE_MEDIAN:
        raise ScaleError(f"values too large for the reflectance scale: {found}", path=path, hint=_SCALE_FIX)
    if scale < REFLECTANCE_SCALE or not files:
        return
    for band, (file, dtype) in files.items():
        if band not in samples or not np.issubdtype(np.dtype(dtype), np.floating):
            continue
        v = _valid_values(samples[band], nodata)
        if v.size and float(np.percentile(v, 99)) <= 2.0:
            raise ScaleError(
                f"band {band} is {dtype} with values {float(v.min()):.3g} to {float(v.max()):.3g}: reflectance, "
                f"not digital numbers like the other bands", path=file,
                hint="replace it with the band's DN file (reflectance x 10000), or read a scene stored "
                "entirely as reflectance 0-1 with --scale 1")
