"""The radiometric offset: reflectance = (DN + offset) / 10000.

Where the offset comes from, in order of precedence:

1. ``catalog``: an explicit per-scene value in ``data_catalog.yaml`` (``offset: -1000``).
2. ``metadata``: the product says so — ``BOA_ADD_OFFSET`` (L2A) or ``RADIO_ADD_OFFSET`` (L1C)
   in a SAFE's ``MTD_MSIL*.xml`` or in the GeoTIFF tags; or a processing baseline ≥ 04.00
   recorded without an explicit offset (then −1000, the ESA convention).
3. ``inferred``: a file with no metadata at all. Rule (documented in docs/offsets.md): read a
   decimated copy of the reflectance bands; if the darkest band's 1st percentile of valid DN
   is ≥ 800, the +1000 offset is present and −1000 is applied, otherwise 0. Surface
   reflectance below 0.08 exists in every ordinary scene (water, shadow, SWIR of vegetation
   or snow), so offset data sit near or above DN 1000 in every band and plain data do not.
   The terramind samples show why a per-file rule is needed: the same provider shipped
   files with and without the offset.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geoseg.io.sensors import OFFSET_BASELINE

__all__ = ["OffsetDecision", "offset_from_tags", "offset_from_safe_xml", "infer_offset", "INFER_THRESHOLD_DN"]

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


def offset_from_safe_xml(xml_path: Path) -> tuple[OffsetDecision | None, dict[str, str]]:
    """Parse a SAFE product's MTD_MSIL1C/2A.xml: the offset and a few product facts."""
    root = ET.parse(xml_path).getroot()
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


def infer_offset(samples: Mapping[str, np.ndarray], nodata: float | None = 0) -> OffsetDecision:
    """Decide from the data whether the +1000 DN offset is present (rule in the module doc).

    Args:
        samples: band name → decimated DN array of that band.
        nodata: DN value to ignore.
    """
    lows: dict[str, float] = {}
    for band, arr in samples.items():
        values = arr[np.isfinite(arr)]
        if nodata is not None:
            values = values[values != nodata]
        if values.size:
            lows[band] = float(np.percentile(values, 1))
    if not lows:
        return OffsetDecision(0.0, "inferred", "no valid pixels to infer from; assuming no offset")
    darkest = min(lows, key=lows.get)
    low = lows[darkest]
    if low >= INFER_THRESHOLD_DN:
        detail = f"no metadata; darkest band {darkest} 1st percentile DN {low:.0f} >= {INFER_THRESHOLD_DN}"
        return OffsetDecision(float(OFFSET_BASELINE), "inferred", detail)
    detail = f"no metadata; darkest band {darkest} 1st percentile DN {low:.0f} < {INFER_THRESHOLD_DN}"
    return OffsetDecision(0.0, "inferred", detail)
