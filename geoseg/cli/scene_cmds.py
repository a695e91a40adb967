"""``geoseg inspect``, ``geoseg features`` and ``geoseg demo-data``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from geoseg.cli.types import Float, Int, IntList
from geoseg.io.sensors import DEFAULT_INVALID_SCL

if TYPE_CHECKING:
    from geoseg.features.writer import Compression

__all__ = ["inspect_cmd", "features_cmd", "demo_data_cmd"]

_scene_arg = click.argument("scene", type=click.Path(path_type=str))  # str: s3://, /vsizip/... kept as written
_resolution = click.option("--resolution", type=Float(0, min_open=True, hint="the target grid resolution in metres, e.g. --resolution 10"), default=10.0, show_default=True, help="Target grid resolution (m).")
_offset = click.option("--offset", type=Float(-10000, 10000, hint="a DN offset, e.g. --offset -1000 (processing baseline 04.00 and later) or --offset 0"), default=None, help="DN offset override (e.g. -1000); default: product metadata, else the documented inference rule.")
_mask = click.option("--mask", type=click.Path(path_type=str), default=None, help="External mask raster; non-zero pixels are invalid.")
_scale = click.option("--scale", type=Float(0, min_open=True, hint="DN per unit reflectance, e.g. --scale 1 for reflectance 0-1"), default=None, help="DN per unit reflectance [default: 10000, Sentinel-2 digital numbers]; 1 for a product stored as reflectance 0-1, 100 for reflectance x 100.")
_date = click.option("--datetime", "--date", "date", default=None, help="Acquisition to read from a folder holding band files of several (YYYYMMDD[THHMMSS] as in the file names, or ISO 8601 such as 2024-06-12T10:15:59Z).")
_invalid_scl = click.option("--invalid-scl", type=IntList(0, 11, what="SCL class", hint="e.g. --invalid-scl 0,1,3,8,9,10"), default=",".join(map(str, DEFAULT_INVALID_SCL)), show_default=True, help="SCL classes treated as invalid.")


def _open(scene: str, resolution: float, offset: float | None, mask: str | None, invalid_scl: tuple[int, ...],
          scale: float | None = None, date: str | None = None):
    from geoseg.io import open_scene

    return open_scene(scene, resolution=resolution, offset=offset, mask=mask, invalid_scl=list(invalid_scl),
                      scale=scale, date=date)


@click.command("inspect")
@_scene_arg
@_resolution
@_offset
@_mask
@_invalid_scl
@_scale
@_date
@click.option("--full", is_flag=True, help="Read every pixel for exact figures (slow on a full tile); "
              "default: a decimated sample (overviews where the files have them), in seconds.")
@click.option("--no-progress", is_flag=True, help="Hide the progress of the reading.")
def inspect_cmd(scene: str, resolution: float, offset: float | None, mask: str | None, invalid_scl: tuple[int, ...],
                scale: float | None, date: str | None, full: bool, no_progress: bool) -> None:
    """Show what SCENE holds: layout, bands, grid, offset, valid fraction, SCL shares, band statistics.

    The figures come from a decimated sample (said in the output); --full reads every pixel.
    """
    import rasterio

    from geoseg.io.summary import CACHE_BYTES, summarise_scene

    with rasterio.Env(GDAL_CACHEMAX=CACHE_BYTES):  # opening samples every file too: flat memory from the start
        opened = _open(scene, resolution, offset, mask, invalid_scl, scale, date)
        summary = summarise_scene(opened, sample=not full, progress=not no_progress)
    for line in summary.lines():
        click.echo(line)


@click.command("features")
@_scene_arg
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Output GeoTIFF.")
@click.option("--recipe", default="s2_24", show_default=True, help="Feature recipe (see docs/features.md).")
@_resolution
@_offset
@_mask
@_invalid_scl
@_scale
@_date
@click.option("--block", type=Int(16, hint="block side in pixels, e.g. --block 512"), default=512, show_default=True, help="Block size in pixels (memory bound).")
@click.option("--workers", type=Int(1, hint="threads, e.g. --workers 4"), default=None, help="Threads (default: all cores).")
@click.option("--compress", type=click.Choice(["zstd", "deflate", "lzw", "none"]), default="zstd", show_default=True,
              help="Lossless compression (deflate for GDAL < 2.3 readers).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def features_cmd(scene: str, out: Path, recipe: str, resolution: float, offset: float | None, mask: str | None,
                 invalid_scl: tuple[int, ...], scale: float | None, date: str | None, block: int, workers: int | None,
                 compress: Compression, no_progress: bool) -> None:
    """Write SCENE's feature stack (default: the 24-channel s2_24 recipe) as a GeoTIFF."""
    import time

    from geoseg.features import get_recipe, write_feature_stack

    chosen = get_recipe(recipe)  # an unknown recipe is refused before the scene is read
    opened = _open(scene, resolution, offset, mask, invalid_scl, scale, date)
    opened.require_bands(chosen.required_bands, f"recipe {chosen.name}")
    start = time.perf_counter()
    write_feature_stack(opened, out, chosen, block=block, workers=workers, compress=compress,
                        progress=not no_progress)
    seconds = time.perf_counter() - start
    g = opened.grid
    click.echo(f"wrote {out}: {chosen.num_channels} channels ({chosen.name}), {g.width} x {g.height} px, "
               f"{g.crs.to_string()}, {seconds:.1f} s ({g.width * g.height / 1e6 / seconds:.1f} Mpx/s)")


@click.command("demo-data")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--size", type=Int(120, 10980, multiple_of=6, hint="a multiple of 6 from 120 to 10980, e.g. --size 960"), default=960, show_default=True, help="Grid size at 10 m (multiple of 6, up to 10980).")
@click.option("--seed", type=Int(0, 2**32 - 1), default=0, show_default=True)
@click.option("--layout", type=click.Choice(["per_band", "safe"]), default="per_band", show_default=True)
def demo_data_cmd(out: Path, size: int, seed: int, layout: str) -> None:
    """Generate the built-in demo scene (Sentinel-2 L2A-like, with land-cover labels)."""
    from geoseg.demo import generate_demo_scene

    demo = generate_demo_scene(out, size=size, seed=seed, layout=layout)  # type: ignore[arg-type]
    click.echo(f"demo scene: {demo.scene}")
    click.echo(f"labels:     {demo.labels}")
