"""STAC items as Sentinel-2 scenes: which asset holds which band, the level, the date and the offset.

A STAC Item (a local JSON file, an http(s) URL of one, or a :class:`pystac.Item`) is parsed
with ``pystac``; :func:`geoseg.io.scene.open_scene` then reads its band assets like the files
of a band folder. Asset keys map to bands for Earth Search v1 (``coastal``, ``red``, ``nir08``,
``scl``...) and for the ``B01``...``B12``/``B8A``/``SCL`` keys of Planetary Computer and others;
other assets are matched by the band name, common name or wavelength in their ``eo:bands``
(STAC 1.1 ``bands``). The offset comes from the item's properties (:func:`stac_offset`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from geoseg.errors import BandError, GeosegError, MissingFileError, SceneError
from geoseg.io.grid import Grid
from geoseg.io.offsets import OffsetDecision, _baseline_offset
from geoseg.io.raster import BandFile, gdal_path, is_virtual, open_raster
from geoseg.io.sensors import S2_BANDS, S2_NODATA, normalise_band_name

if TYPE_CHECKING:
    import pystac

__all__ = ["EARTH_SEARCH_KEYS", "StacScene", "is_stac_item", "load_item", "read_stac_item", "stac_offset"]

# Earth Search v1 asset keys (STAC common names, plus rededge1-3 and scl) -> Sentinel-2 bands
EARTH_SEARCH_KEYS: dict[str, str] = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
    "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09", "cirrus": "B10", "swir16": "B11",
    "swir22": "B12", "scl": "SCL",
}
_OFFSET_APPLIED = ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied")
_BASELINE = ("s2:processing_baseline", "sentinel:processing_baseline", "processing:version")
_API_ITEM = re.compile(r"/collections/[^/]+/items/[^/]+/?$")
_KEYS_HINT = ("geoseg reads the asset keys coastal, blue, green, red, rededge1-3, nir, nir08, nir09, swir16, "
              "swir22, scl (Earth Search) or B01-B12, B8A, SCL (Planetary Computer), or single-band assets whose "
              "eo:bands name a Sentinel-2 band")


def is_stac_item(source: object) -> bool:
    """Whether ``source`` is given as a STAC item.

    That is a :class:`pystac.Item`, a path or URL ending in ``.json``, or a STAC API item URL
    (``https://.../collections/C/items/ID``).
    """
    if not isinstance(source, str | Path):
        import pystac

        return isinstance(source, pystac.Item)
    text = str(source)
    if text.startswith("/vsi"):
        return False
    url = urlparse(text) if "://" in text else None
    path = url.path if url is not None else text
    api = url is not None and url.scheme.lower() in ("http", "https") and bool(_API_ITEM.search(path))
    return path.lower().endswith(".json") or api


def _fetch(url: str) -> bytes:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()
    except urllib.error.HTTPError as err:
        reason = f"HTTP {err.code} {err.reason}"
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = str(getattr(err, "reason", err))
    raise MissingFileError(f"cannot fetch the STAC item ({reason})", path=url,
                           hint="check the URL and the network, or download the item and give its file")


def _check_feature(data: object, shown: str) -> None:
    if isinstance(data, dict) and data.get("type") == "Feature" and "stac_version" in data:
        return
    hint = "give a STAC Item: a JSON object with \"type\": \"Feature\" and a \"stac_version\" (geoseg search writes them)"
    if not isinstance(data, dict):
        raise SceneError(f"not a STAC item (the JSON is a {type(data).__name__}, not an object)", path=shown, hint=hint)
    if data.get("type") == "FeatureCollection" and isinstance(data.get("features"), list):
        hint = (f"this holds {len(data['features'])} items (a search result or an ItemCollection): save each item "
                "to its own file, e.g. with geoseg search --out items/")
    found = f"its type is {data.get('type')!r}" + ("" if "stac_version" in data else " and it has no stac_version")
    raise SceneError(f"not a STAC item ({found})", path=shown, hint=hint)


def load_item(href: str | Path) -> pystac.Item:
    """Read the STAC item at ``href`` (a local JSON file or an http(s) URL); errors name ``href`` as given.

    Relative asset hrefs resolve against the item's own location (the file or URL).
    """
    import pystac

    shown = str(href)
    if is_virtual(shown):
        if urlparse(shown).scheme.lower() not in ("http", "https"):
            raise MissingFileError("a STAC item is read from a local file or an http(s) URL", path=shown,
                                   hint="download the item JSON first and give its local path")
        raw, self_href = _fetch(shown), shown
    else:
        path = Path(shown).expanduser()
        if not path.is_file():
            raise MissingFileError("STAC item does not exist", path=shown,
                                   hint="check the path of the item JSON (catalog: relative to the catalog's folder)")
        raw, self_href = path.read_bytes(), str(path.absolute())
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise SceneError(f"not a STAC item: not valid JSON ({err})", path=shown,
                         hint="the file is damaged or not JSON: download the item again") from None
    _check_feature(data, shown)
    try:
        return pystac.Item.from_dict(data, href=self_href, preserve_dict=False)
    except Exception as err:  # pystac's STACError, KeyError, ... on a malformed item
        raise SceneError(f"not a readable STAC item ({type(err).__name__}: {err})", path=shown,
                         hint="the item is malformed: download it again from its STAC API") from None


def _band_info(asset: pystac.Asset) -> list[dict[str, Any]]:
    """The asset's band objects (``bands``, ``eo:bands``, ``raster:bands`` merged by position), prefixes dropped."""
    found = (asset.extra_fields.get(k) for k in ("bands", "eo:bands", "raster:bands"))
    lists: list[list[Any]] = [x for x in found if isinstance(x, list)]
    merged: list[dict[str, Any]] = [{} for _ in range(max(map(len, lists), default=0))]
    for entries in lists:
        for i, entry in enumerate(entries):
            if isinstance(entry, dict):
                merged[i].update({k.split(":")[-1]: v for k, v in entry.items()})
    if len(merged) <= 1:  # STAC 1.1 puts single-band fields on the asset: raster:scale, eo:common_name
        top = {k.split(":")[-1]: v for k, v in asset.extra_fields.items()
               if k.startswith(("raster:", "eo:")) and not k.endswith("bands")}
        merged = [{**top, **(merged[0] if merged else {})}]
    return merged


def _asset_band(key: str, asset: pystac.Asset, info: list[dict[str, Any]]) -> tuple[int, str] | None:
    """(how it was matched: 0 key, 1 band name, 2 common name, 3 wavelength; the band) or None."""
    band = EARTH_SEARCH_KEYS.get(key.lower()) or normalise_band_name(key)
    if band:
        return 0, band
    if len(info) != 1 or not (asset.media_type or "image/").startswith("image/"):
        return None
    name = normalise_band_name(str(info[0].get("name", "")))
    common = EARTH_SEARCH_KEYS.get(str(info[0].get("common_name", "")).lower())
    if name or (common and common != "SCL"):
        return (1, name) if name else (2, str(common))
    wavelength = info[0].get("center_wavelength")
    if isinstance(wavelength, int | float):
        nearest = min(S2_BANDS.values(), key=lambda b: abs(b.wavelength_nm - 1000 * wavelength))
        if abs(nearest.wavelength_nm - 1000 * wavelength) <= 12:
            return 3, nearest.name
    return None


def _resolution(key: str, asset: pystac.Asset, info: list[dict[str, Any]]) -> float:
    for value in (asset.extra_fields.get("gsd"), *(b.get("spatial_resolution") for b in info)):
        if isinstance(value, int | float):
            return float(value)
    match = re.search(r"(\d+)m$", key)
    return float(match.group(1)) if match else math.inf


def stac_offset(properties: Mapping[str, Any],
                bands: Sequence[Mapping[str, Any]]) -> tuple[OffsetDecision | None, float | None]:
    """The offset (and scale) a STAC item states, by the first of these rules that applies.

    1. ``earthsearch:boa_offset_applied: true``: the provider already removed the offset: 0.
    2. ``raster:bands`` ``scale``/``offset`` on the band assets: reflectance = DN x scale + offset,
       i.e. offset/scale DN and 1/scale DN per unit reflectance (0.0001, -0.1: -1000, 10000).
    3. ``s2:processing_baseline`` (or ``processing:version``) >= 04.00: -1000, else 0.

    Args:
        properties: the item's properties.
        bands: the band object (:func:`_band_info`) of each reflectance band asset.

    Returns:
        ``(decision, scale)``: decision None when no rule applies (the data decide then), scale
        None unless ``raster:bands`` states it.
    """
    for key in _OFFSET_APPLIED:
        if properties.get(key) is True:
            return OffsetDecision(0.0, "metadata", f"STAC {key}=true: the offset is already applied"), None
    stated = [(float(b["scale"]), float(b.get("offset") or 0)) for b in bands
              if isinstance(b.get("scale"), int | float) and b["scale"] > 0 and isinstance(b.get("offset", 0), int | float)]
    if stated:
        scale, offset = stated[0]
        differ = f" (bands differ: {sorted(set(stated))}; using the first)" if len(set(stated)) > 1 else ""
        return (OffsetDecision(float(f"{offset / scale:.10g}"), "metadata", f"STAC raster:bands scale {scale:g} offset {offset:g}: "
                               f"reflectance = DN x {scale:g} {offset:+g}{differ}"), float(f"{1 / scale:.10g}"))
    for key in _BASELINE:
        baseline = properties.get(key)
        value = _baseline_offset(str(baseline)) if baseline is not None else None
        if value is not None:
            relation = ">=" if value else "<"
            return OffsetDecision(value, "metadata", f"STAC {key} {baseline} {relation} 04.00"), None
    return None, None


def _level(item: pystac.Item) -> str | None:
    props = item.properties
    for text in (props.get("s2:product_type"), props.get("processing:level"), item.collection_id, item.id):
        match = re.search(r"(?:MSI|L)(1C|2A)", str(text or ""), re.IGNORECASE)
        if match:
            return f"L{match.group(1).upper()}"
    return None


def _href(key: str, asset: pystac.Asset, shown: str) -> str:
    """The asset's location as geoseg opens it: a local path, or a URL GDAL reads (:func:`gdal_path`)."""
    href = asset.get_absolute_href()
    if href is None:
        raise SceneError(f"asset {key!r} has a relative href ({asset.href}) but the item has no location",
                         path=shown, hint="give the item as a file or URL, or call item.set_self_href(...) first")
    if href.lower().startswith("file://"):
        from urllib.request import url2pathname

        href = url2pathname(urlparse(href).path)
    try:
        gdal_path(href)  # an unsupported scheme (ftp://...) is refused before anything is opened
    except GeosegError as err:
        raise type(err)(f"asset {key!r}: {err}", path=shown) from None
    return href


@dataclass(frozen=True)
class StacScene:
    """What a STAC item says about its scene (:func:`read_stac_item`); ``open_scene`` reads it."""

    item: str  # the item as the user gave it (its self href for a pystac.Item): errors name it
    scene_id: str
    assets: Mapping[str, tuple[str, str]]  # band (B01..B12, SCL) -> (asset key, local path or URL)
    level: str
    datetime: str | None
    offset: OffsetDecision | None
    scale: float | None  # DN per unit reflectance, when raster:bands states it
    facts: Mapping[str, str] = field(default_factory=dict)

    def band_files(self) -> tuple[dict[str, BandFile], BandFile | None]:
        """Open every band asset's header (in threads: remote assets); errors name the item."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, len(self.assets))) as pool:
            opened = list(pool.map(lambda entry: self._open(entry[0], *entry[1]), self.assets.items()))
        files = dict(zip(self.assets, opened, strict=True))
        return {b: f for b, f in files.items() if b != "SCL"}, files.get("SCL")

    def _open(self, band: str, key: str, href: str) -> BandFile:
        try:
            with open_raster(href) as ds:
                if ds.count != 1:
                    raise BandError(f"asset {key!r} ({href}) holds {ds.count} bands; a band asset holds one",
                                    path=self.item, hint="remove or rename that asset in the item")
                nodata = ds.nodata if ds.nodata is not None else S2_NODATA
                return BandFile(href, 1, Grid.from_dataset(ds, href), nodata, ds.dtypes[0])
        except BandError:
            raise
        except GeosegError as err:
            reason = str(err).split(" — ")[0]
            raise type(err)(f"band {band} (asset {key!r}): {reason}", path=self.item,
                            hint="fix the asset's href in the item (relative hrefs are relative to the item's "
                            "file) or the credentials for its location (docs/inputs.md)") from None


def read_stac_item(source: str | Path | pystac.Item) -> StacScene:
    """Describe the scene of a STAC item (a local JSON file, an http(s) URL or a :class:`pystac.Item`).

    Raises:
        MissingFileError, SceneError: the item cannot be read or is not a STAC item.
        BandError: the item has no Sentinel-2 band assets (the message lists its asset keys).
    """
    import pystac

    item = source if isinstance(source, pystac.Item) else load_item(source)
    shown = (item.get_self_href() or item.id) if isinstance(source, pystac.Item) else str(source)
    chosen: dict[str, tuple[tuple[int, float, int], str, pystac.Asset, list[dict[str, Any]]]] = {}
    for key, asset in item.assets.items():
        info = _band_info(asset)
        match = _asset_band(key, asset, info)
        if match is None:
            continue
        rank = (match[0], _resolution(key, asset, info), 0 if "tiff" in (asset.media_type or "tiff") else 1)
        if match[1] not in chosen or rank < chosen[match[1]][0]:
            chosen[match[1]] = (rank, key, asset, info)
    if not any(band != "SCL" for band in chosen):
        raise BandError(f"the STAC item has no Sentinel-2 band assets (its assets: {', '.join(item.assets) or 'none'})",
                        path=shown, hint=_KEYS_HINT)
    assets = {band: (key, _href(key, asset, shown)) for band, (_, key, asset, _) in chosen.items()}
    reflectance = [info[0] for band, (_, _, _, info) in chosen.items() if band != "SCL" and len(info) == 1]
    decision, scale = stac_offset(item.properties, reflectance)
    props = item.properties
    level = _level(item) or ("L2A" if "SCL" in chosen else "L1C" if "B10" in chosen else "unknown")
    facts = {"STAC_ITEM": shown, "COLLECTION": item.collection_id,
             "PROCESSING_BASELINE": next((props[k] for k in _BASELINE if k in props), None),
             "PRODUCT_TYPE": props.get("s2:product_type"), "SPACECRAFT_NAME": props.get("platform"),
             "CLOUD_COVER": props.get("eo:cloud_cover")}
    return StacScene(
        item=shown, scene_id=item.id, assets=assets, level=level,
        datetime=props.get("datetime") or props.get("start_datetime"), offset=decision, scale=scale,
        facts={k: str(v) for k, v in facts.items() if v is not None},
    )
