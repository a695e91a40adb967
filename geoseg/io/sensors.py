"""Sentinel-2 MSI described as data: band names, native resolutions, wavelengths.

All reading logic works from this table; nothing else in geoseg hard-codes band facts.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Band",
    "S2_BANDS",
    "S2_BAND_NAMES",
    "S2_L2A_BAND_NAMES",
    "SCL_CLASSES",
    "DEFAULT_INVALID_SCL",
    "REFLECTANCE_SCALE",
    "OFFSET_BASELINE",
    "S2_NODATA",
    "normalise_band_name",
]


@dataclass(frozen=True)
class Band:
    """One spectral band of Sentinel-2 MSI."""

    name: str
    resolution: int  # native ground sampling distance in metres
    wavelength_nm: int
    description: str


S2_BANDS: dict[str, Band] = {
    b.name: b
    for b in (
        Band("B01", 60, 443, "coastal aerosol"),
        Band("B02", 10, 490, "blue"),
        Band("B03", 10, 560, "green"),
        Band("B04", 10, 665, "red"),
        Band("B05", 20, 705, "red edge 1"),
        Band("B06", 20, 740, "red edge 2"),
        Band("B07", 20, 783, "red edge 3"),
        Band("B08", 10, 842, "NIR"),
        Band("B8A", 20, 865, "narrow NIR"),
        Band("B09", 60, 945, "water vapour"),
        Band("B10", 60, 1375, "SWIR cirrus"),
        Band("B11", 20, 1610, "SWIR 1"),
        Band("B12", 20, 2190, "SWIR 2"),
    )
}
S2_BAND_NAMES: tuple[str, ...] = tuple(S2_BANDS)
# L2A products carry no B10 (cirrus is absorbed in the atmospheric correction).
S2_L2A_BAND_NAMES: tuple[str, ...] = tuple(b for b in S2_BAND_NAMES if b != "B10")

SCL_CLASSES: dict[int, str] = {
    0: "no data",
    1: "saturated or defective",
    2: "dark area pixels",
    3: "cloud shadows",
    4: "vegetation",
    5: "not vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud medium probability",
    9: "cloud high probability",
    10: "thin cirrus",
    11: "snow or ice",
}
DEFAULT_INVALID_SCL: tuple[int, ...] = (0, 1, 3, 8, 9, 10)

REFLECTANCE_SCALE = 10000.0  # BOA/TOA quantification value
OFFSET_BASELINE = -1000  # radiometric offset of processing baseline >= 04.00
S2_NODATA = 0


def normalise_band_name(name: str) -> str | None:
    """Map spellings such as ``B2``, ``b02``, ``B8a`` or ``B8A_20m`` to ``B02``/``B8A``.

    Returns None when the name is not a Sentinel-2 band (``SCL`` is returned as is).
    """
    token = name.strip().upper()
    if token.startswith("SCL"):
        return "SCL"
    if not token.startswith("B"):
        return None
    body = token[1:].split("_")[0]
    if body in ("8A", "08A"):
        return "B8A"
    if body.isdigit():
        candidate = f"B{int(body):02d}"
        return candidate if candidate in S2_BANDS else None
    return None
