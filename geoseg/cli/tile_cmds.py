"""``geoseg tile`` (dataset → CubeStore) and ``geoseg cubes info|export``."""

from __future__ import annotations

from pathlib import Path

import click

from geoseg.cli.types import Float, Fractions, Int, SchedulerAddress, fail_option

__all__ = ["tile_cmd", "cubes_group"]


@click.command("tile")
@click.option("--catalog", type=click.Path(path_type=Path), default=Path("data_catalog.yaml"), show_default=True,
              help="Data catalog YAML.")
@click.option("--dataset", required=True, help="Dataset name in the catalog.")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="CubeStore directory to write.")
@click.option("--cube-size", type=Int(8, 10980, hint="cube side in pixels, e.g. --cube-size 256"), default=256, show_default=True, help="Cube height and width (pixels).")
@click.option("--overlap", type=Int(0, hint="pixels shared by neighbouring cubes, e.g. --overlap 32"), default=32, show_default=True, help="Pixels shared by neighbouring cubes.")
@click.option("--min-valid", type=Float(0, 1, hint="a fraction of valid pixels from 0 to 1, e.g. --min-valid 0.2"), default=0.2, show_default=True,
              help="Skip cubes with a smaller fraction of valid pixels.")
@click.option("--split", "split", type=Fractions(), default="0.7,0.15,0.15", show_default=True,
              help="Train,val,test fractions of the spatial blocks.")
@click.option("--split-block", type=Int(1, hint="cubes per block side, e.g. --split-block 4"), default=4, show_default=True,
              help="Cubes per side of a split block (blocks never overlap).")
@click.option("--seed", type=Int(0, 2**32 - 1), default=0, show_default=True, help="Seed of the block split.")
@click.option("--workers", type=Int(1, hint="worker processes, e.g. --workers 2"), default=None, help="Worker processes of the local Dask cluster (default: one per core).")
@click.option("--scheduler", type=SchedulerAddress(), default=None, help="Address of an existing Dask scheduler, e.g. tcp://10.0.0.5:8786.")
@click.option("--overwrite", is_flag=True, help="Rebuild a store made with other parameters or sources.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def tile_cmd(catalog: Path, dataset: str, out: Path, cube_size: int, overlap: int, min_valid: float,
             split: tuple[float, float, float], split_block: int, seed: int, workers: int | None,
             scheduler: str | None, overwrite: bool, no_progress: bool) -> None:
    """Cut every scene of DATASET into masked feature cubes with labels (a CubeStore), with Dask.

    Rerunning the same command resumes an interrupted run; the result equals a clean run.
    """
    if overlap >= cube_size:
        fail_option("--overlap", f"{overlap} must be smaller than --cube-size {cube_size}",
                    "e.g. --cube-size 256 --overlap 32")
    if workers is not None and scheduler is not None:
        raise click.UsageError("give either --workers (local cluster) or --scheduler (existing cluster), not both")
    from geoseg.tiling import tile_dataset

    summary = tile_dataset(catalog, dataset, out, cube_size=cube_size, overlap=overlap, min_valid=min_valid,
                           split=split, seed=seed, split_block=split_block, workers=workers, scheduler=scheduler,
                           overwrite=overwrite, progress=not no_progress)
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
