"""``geoseg export MODEL_DIR --format onnx --out model.onnx`` (for the Deepness QGIS plugin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geoseg.cli.options import Flag, given, option_fields, options_from
from geoseg.export.options import MAX_OPSET, MIN_OPSET, ExportOptions

__all__ = ["export_cmd"]


@click.command("export")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Output file, e.g. model.onnx.")
@options_from(ExportOptions, flags={
    "opset": Flag(hint=f"an ONNX opset from {MIN_OPSET} to {MAX_OPSET}, e.g. --opset 17"),
    "tile_size": Flag(hint="pixels, e.g. --tile-size 256"),
    "overlap": Flag(hint="percent of the tile, e.g. --overlap 25"),
    "resolution": Flag(hint="input pixel size in metres, e.g. --resolution 10"),
})
def export_cmd(model_dir: Path, out: Path, **options: Any) -> None:
    """Export MODEL_DIR (a bundle, or a training run: its best/ bundle) for QGIS.

    The ONNX model takes the 24-channel feature stack (geoseg features SCENE --out stack.tif)
    standardised as Deepness does, returns class probabilities, and carries the metadata
    Deepness reads (class names, resolution, tile size, overlap, standardisation).

    \b
    Example:
      geoseg export runs/demo/train/model/best --format onnx --out model.onnx
    """
    opts = ExportOptions(**given(options, option_fields(export_cmd)))  # bad options refused before any work
    from geoseg.export import export_onnx

    result = export_onnx(model_dir, out, opts)
    for line in result.lines():
        click.echo(line)
