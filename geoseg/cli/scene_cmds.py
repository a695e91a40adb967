"""``geoseg inspect``, ``geoseg features`` and ``geoseg demo-data``.

How the scene is opened (``--resolution``, ``--offset``, ``--scale``, ``--invalid-scl``, ``--date``)
is generated from :class:`~geoseg.io.SceneOptions`, and how ``features`` runs from
:class:`~geoseg.features.FeatureOptions`: the models hold every default and bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geoseg.cli.options import Flag, given, options_from
from geoseg.cli.types import Int
from geoseg.features.options import FeatureOptions
from geoseg.io.options import SceneOptions

_MAX_DATES = 37  # geoseg.demo.series.MAX_DATES (not imported: the CLI starts without numpy/scipy)

__all__ = ["inspect_cmd", "features_cmd", "demo_data_cmd"]

_scene_arg = click.argument("scene", type=click.Path(path_type=str))  # str: s3://, /vsizip/... kept as written
_mask = click.option("--mask", type=click.Path(path_type=str), default=None, help="External mask raster; non-zero pixels are invalid.")
SCENE_FLAGS = {
    "resolution": Flag(hint="the target grid resolution in metres, e.g. --resolution 10"),
    "offset": Flag(hint="a DN offset, e.g. --offset -1000 (processing baseline 04.00 and later) or --offset 0"),
    "scale": Flag(hint="DN per unit reflectance, e.g. --scale 1 for reflectance 0-1"),
    "invalid_scl": Flag(hint="e.g. --invalid-scl 0,1,3,8,9,10"),
    "date": Flag(aliases=("--datetime",)),
}
_scene_options = options_from(SceneOptions, flags=SCENE_FLAGS)


def _open(scene: str, mask: str | None, options: dict[str, Any]):
    from geoseg.io import open_scene

    return open_scene(scene, SceneOptions(**given(options, SceneOptions.model_fields)), mask=mask)


@click.command("inspect")
@_scene_arg
@_mask
@click.option("--full", is_flag=True, help="Read every pixel for exact figures (slow on a full tile); "
              "default: a decimated sample (overviews where the files have them), in seconds.")
@click.option("--no-progress", is_flag=True, help="Hide the progress of the reading.")
@_scene_options
def inspect_cmd(scene: str, mask: str | None, full: bool, no_progress: bool, **options: Any) -> None:
    """Show what SCENE holds: layout, bands, grid, offset, valid fraction, SCL shares, band statistics.

    The figures come from a decimated sample (said in the output); --full reads every pixel.
    """
    import rasterio

    from geoseg.io.summary import CACHE_BYTES, summarise_scene

    with rasterio.Env(GDAL_CACHEMAX=CACHE_BYTES):  # opening samples every file too: flat memory from the start
        opened = _open(scene, mask, options)
        summary = summarise_scene(opened, sample=not full, progress=not no_progress)
    for line in summary.lines():
        click.echo(line)


@click.command("features")
@_scene_arg
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Output GeoTIFF.")
@click.option("--recipe", default="s2_24", show_default=True, help="Feature recipe (see docs/features.md).")
@_mask
@_scene_options
@options_from(FeatureOptions, flags={"block": Flag(hint="block side in pixels, e.g. --block 512"),
                                     "workers": Flag(hint="threads, e.g. --workers 4")})
def features_cmd(scene: str, out: Path, recipe: str, mask: str | None, **options: Any) -> None:
    """Write SCENE's feature stack (default: the 24-channel s2_24 recipe) as a GeoTIFF."""
    import time

    from geoseg.features import get_recipe, write_feature_stack

    feature_options = FeatureOptions(**given(options, FeatureOptions.model_fields))  # refused before any work
    chosen = get_recipe(recipe)  # an unknown recipe is refused before the scene is read
    opened = _open(scene, mask, options)
    opened.require_bands(chosen.required_bands, f"recipe {chosen.name}")
    start = time.perf_counter()
    write_feature_stack(opened, out, chosen, feature_options)
    seconds = time.perf_counter() - start
    g = opened.grid
    click.echo(f"wrote {out}: {chosen.num_channels} channels ({chosen.name}), {g.width} x {g.height} px, "
               f"{g.crs.to_string()}, {seconds:.1f} s ({g.width * g.height / 1e6 / seconds:.1f} Mpx/s)")


@click.command("demo-data")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--size", type=Int(120, 10980, multiple_of=6, hint="a multiple of 6 from 120 to 10980, e.g. --size 960"), default=960, show_default=True, help="Grid size at 10 m (multiple of 6, up to 10980).")
@click.option("--seed", type=Int(0, 2**32 - 1), default=0, show_default=True)
@click.option("--layout", type=click.Choice(["per_band", "safe"]), default="per_band", show_default=True)
@click.option("--dates", type=Int(1, _MAX_DATES, hint="e.g. --dates 6"), default=1, show_default=True,
              help=f"Acquisitions: 1 writes the single-date scene; 2 to {_MAX_DATES} write a season (mid-April to "
                   "mid-October) over the same grid, one scene folder per date, one labels.tif.")
def demo_data_cmd(out: Path, size: int, seed: int, layout: str, dates: int) -> None:
    """Generate the built-in demo scene (Sentinel-2 L2A-like, with land-cover labels), or a season of them."""
    from geoseg.demo import generate_demo_scene, generate_demo_series

    if dates == 1:
        demo = generate_demo_scene(out, size=size, seed=seed, layout=layout)  # type: ignore[arg-type]
        click.echo(f"demo scene: {demo.scene}")
        click.echo(f"labels:     {demo.labels}")
        return
    series = generate_demo_series(out, size=size, seed=seed, dates=dates, layout=layout)  # type: ignore[arg-type]
    for when, scene in zip(series.datetimes, series.scenes, strict=True):
        click.echo(f"{when:%Y-%m-%d}: {scene}")
    click.echo(f"labels:     {series.labels}")
