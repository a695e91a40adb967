"""``geoseg tile`` (dataset → CubeStore) and ``geoseg cubes info|export``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geoseg.cli.options import Flag, given, option_fields, options_from
from geoseg.cli.types import Fractions, SchedulerAddress
from geoseg.tiling.options import TileOptions

__all__ = ["tile_cmd", "cubes_group"]


@click.command("tile")
@click.option("--catalog", type=click.Path(path_type=Path), default=Path("data_catalog.yaml"), show_default=True,
              help="Data catalog YAML.")
@click.option("--dataset", required=True, help="Dataset name in the catalog.")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="CubeStore directory to write.")
@options_from(TileOptions, exclude=("group",), flags={
    "split": Flag(type=Fractions()),
    "scheduler": Flag(type=SchedulerAddress()),
    "overwrite": Flag(is_flag=True),
    "progress": Flag(help="show a progress bar (--no-progress: plain log lines only)"),
})
def tile_cmd(catalog: Path, dataset: str, out: Path, **options: Any) -> None:
    """Cut every scene of DATASET into masked feature cubes with labels (a CubeStore), with Dask.

    Rerunning the same command resumes an interrupted run; the result equals a clean run.
    """
    from geoseg.tiling import tile_dataset

    summary = tile_dataset(catalog, dataset, out, TileOptions(**given(options, option_fields(tile_cmd))))
    for line in summary.lines():
        click.echo(line)


@click.group("cubes")
def cubes_group() -> None:
    """Inspect or export a CubeStore."""


@cubes_group.command("info")
@click.argument("store", type=click.Path(path_type=Path))
def info_cmd(store: Path) -> None:
    """Summarise STORE: cubes, splits, classes, CRSs."""
    from geoseg.tiling import store_info

    for line in store_info(store):
        click.echo(line)


@cubes_group.command("export")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Output .npy file.")
@click.option("--with-labels", is_flag=True, help="Append the label as a last channel (float32 index, 255 ignore).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default=None, help="Only this split.")
def export_cmd(store: Path, out: Path, with_labels: bool, split: str | None) -> None:
    """Write STORE's cubes as one numpy array (N, C[+1], H, W) float32."""
    import numpy as np

    from geoseg.tiling import export_npy

    path = export_npy(store, out, with_labels=with_labels, split=split)  # type: ignore[arg-type]
    shape = np.load(path, mmap_mode="r").shape
    click.echo(f"wrote {path}: array {shape} float32")
