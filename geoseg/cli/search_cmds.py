"""``geoseg search``: Sentinel-2 STAC items of an area and a period, written as catalog-ready files.

Needs ``pystac-client`` (``pip install "geoseg[stac]"``) and network. Each item found is
written to ``--out/<item id>.json`` (asset hrefs made absolute), and the lines to paste under
a dataset's ``scenes:`` in ``data_catalog.yaml`` (``stac: <file>``) are printed.
"""

from __future__ import annotations

import math
import re
import warnings
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from typing_extensions import override

from geoseg.cli.types import Float, Int, fail_option

if TYPE_CHECKING:
    import pystac

__all__ = ["search_cmd", "BBox"]

KIND = "STAC search result"  # the kind of folder --out is (geoseg.utils.outputs markers)
_BBOX_HINT = "west,south,east,north in degrees (WGS 84), e.g. --bbox 12.49,52.45,12.73,52.53"
_DATETIME_HINT = "an ISO 8601 date or range, e.g. --datetime 2024-06-01/2024-08-31 (.. for an open end)"


class BBox(click.ParamType):
    """``W,S,E,N`` in degrees: four finite numbers with west < east and south < north."""

    name = "W,S,E,N"

    @override
    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[float, ...]:
        if isinstance(value, tuple):
            return value
        try:
            w, s, e, n = (float(v) for v in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not four comma-separated numbers — {_BBOX_HINT}", param, ctx)
        if not all(math.isfinite(v) for v in (w, s, e, n)) or not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
            self.fail(f"{value!r} is not a box with -180 <= west < east <= 180 and -90 <= south < north <= 90 "
                      f"— {_BBOX_HINT}", param, ctx)
        return w, s, e, n


def _check_datetime(text: str) -> None:
    parts = text.split("/")
    open_end = ("", "..")

    def iso(part: str) -> bool:
        try:
            datetime.fromisoformat(part)
        except ValueError:
            return False
        return True

    if len(parts) > 2 or all(p in open_end for p in parts) or not all(p in open_end or iso(p) for p in parts):
        fail_option("--datetime", f"{text!r} is not a date or a date range", _DATETIME_HINT)


def _cloud(item: pystac.Item) -> float | None:
    value = item.properties.get("eo:cloud_cover")
    return float(value) if isinstance(value, int | float) else None


def _search(api: str, collection: str, bbox: tuple[float, ...], when: str, max_cloud: float | None,
            limit: int) -> list[pystac.Item]:
    """The first ``limit`` items matching (cloud cover also checked here: not every API filters it)."""
    from geoseg.errors import ConfigError, GeosegError, MissingFileError

    try:
        from pystac_client import Client, ConformanceClasses
        from pystac_client.warnings import PystacClientWarning
    except ImportError:
        raise ConfigError("geoseg search needs pystac-client, which is not installed",
                          hint='pip install "geoseg[stac]" (or: pip install pystac-client)') from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PystacClientWarning)
            client = Client.open(api, timeout=60)
            query = ({"eo:cloud_cover": {"lte": max_cloud}}
                     if max_cloud is not None and client.conforms_to(ConformanceClasses.QUERY) else None)
            found = client.search(collections=[collection], bbox=list(bbox), datetime=when, query=query,
                                  max_items=20 * limit, limit=min(100, 2 * limit))
            items: list[pystac.Item] = []
            for item in found.items():
                cloud = _cloud(item)
                if max_cloud is None or (cloud is not None and cloud <= max_cloud):
                    items.append(item)
                if len(items) == limit:
                    break
    except GeosegError:
        raise
    except Exception as err:  # pystac-client's APIError, a connection error, a non-STAC answer
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise MissingFileError(f"cannot search the STAC API ({type(err).__name__}: {reason})", path=api,
                               hint="check the URL (the API's root, e.g. https://earth-search.aws.element84.com/v1) "
                               "and the network") from err
    return items


@click.command("search")
@click.option("--stac-api", "api", required=True, help="STAC API root, e.g. https://earth-search.aws.element84.com/v1 "
              "or https://planetarycomputer.microsoft.com/api/stac/v1.")
@click.option("--bbox", type=BBox(), required=True, help="Area: west,south,east,north in degrees (WGS 84).")
@click.option("--datetime", "when", required=True, help="Date or range (ISO 8601), e.g. 2024-06-01/2024-08-31.")
@click.option("--max-cloud", type=Float(0, 100, hint="a percentage, e.g. --max-cloud 20"), default=None,
              help="Largest cloud cover in percent (eo:cloud_cover) [default: any].")
@click.option("--collection", default="sentinel-2-l2a", show_default=True, help="STAC collection to search.")
@click.option("--limit", type=Int(1, 1000, hint="e.g. --limit 10"), default=20, show_default=True,
              help="Most items to write.")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True,
              help="Folder for the item files (new, empty, or written by geoseg search).")
def search_cmd(api: str, bbox: tuple[float, ...], when: str, max_cloud: float | None, collection: str, limit: int,
               out: Path) -> None:
    """Find Sentinel-2 STAC items, write each as OUT/<id>.json and print catalog lines (stac: ...)."""
    from geoseg.errors import EmptyAreaError, OutputError
    from geoseg.utils.atomic import write_json_atomic
    from geoseg.utils.outputs import claim_folder, mark_folder

    _check_datetime(when)
    owned = claim_folder(out, KIND, flag="--out")  # before the network: a refused --out costs nothing
    items = _search(api, collection, bbox, when, max_cloud, limit)
    if not items:
        cloud = f", cloud cover <= {max_cloud:g} %" if max_cloud is not None else ""
        raise EmptyAreaError(f"no {collection} items in {','.join(f'{v:g}' for v in bbox)}, {when}{cloud}", path=api,
                             hint="widen --bbox or --datetime, raise --max-cloud, or check --collection")
    files = {f"{re.sub(r'[^A-Za-z0-9._-]', '_', item.id)}.json": item for item in items}
    clash = [name for name in files if (out / name).exists() and name not in owned]
    if clash:
        raise OutputError(f"--out folder holds {', '.join(clash[:3])}, which geoseg did not write", path=out,
                          hint="move those files away or choose another folder for --out; geoseg never overwrites "
                          "files it did not write")
    out.mkdir(parents=True, exist_ok=True)
    mark_folder(out, KIND, files)  # recorded first: the leftovers of a killed run are known to be geoseg's
    click.echo(f"# {len(files)} item(s) from {api} ({collection}) written to {out}; paste under a dataset's "
               "scenes: in data_catalog.yaml (paths relative to the catalog's folder)")
    for name, item in files.items():
        if item.get_self_href() is not None:
            item.make_asset_hrefs_absolute()
        write_json_atomic(out / name, item.to_dict(transform_hrefs=False))
        cover = _cloud(item)
        click.echo(f"- id: {item.id}  # {item.properties.get('datetime') or 'no datetime'}"
                   + (f", cloud {cover:g} %" if cover is not None else ""))
        click.echo(f"  stac: {out / name}")
