"""``geoseg export MODEL_DIR --format onnx --out model.onnx`` (for the Deepness QGIS plugin)."""

from __future__ import annotations

from pathlib import Path

import click

from geoseg.cli.types import Float, Int

__all__ = ["export_cmd"]


@click.command("export")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True,
              help="Export format.")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Output file, e.g. model.onnx.")
@click.option("--opset", type=Int(13, 20, hint="an ONNX opset from 13 to 20, e.g. --opset 17"), default=17, show_default=True, help="ONNX opset (Deepness needs <= 20).")
@click.option("--tile-size", type=Int(8, hint="pixels, e.g. --tile-size 256"), default=None, help="Input tile size in pixels (default: the model's window).")
@click.option("--overlap", type=Int(0, 100, max_open=True, hint="percent of the tile, e.g. --overlap 25"), default=25, show_default=True, help="Deepness tile overlap in percent.")
@click.option("--resolution", type=Float(0, min_open=True, hint="input pixel size in metres, e.g. --resolution 10"), default=10.0, show_default=True, help="Input pixel size in metres.")
@click.option("--batch", type=Int(1, hint="e.g. --batch 1"), default=None, help="Static batch size (default: dynamic).")
@click.option("--mask-invalid/--no-mask-invalid", default=True, show_default=True,
              help="Re-apply the zero mask of invalid pixels inside the graph (see docs/qgis.md).")
@click.option("--exporter", type=click.Choice(["torchscript", "dynamo"]), default="torchscript", show_default=True,
              help="PyTorch ONNX exporter.")
@click.option("--no-check", is_flag=True, help="Skip the onnxruntime-vs-PyTorch check.")
def export_cmd(model_dir: Path, fmt: str, out: Path, opset: int, tile_size: int | None, overlap: int,
               resolution: float, batch: int | None, mask_invalid: bool, exporter: str, no_check: bool) -> None:
    """Export MODEL_DIR (a bundle, or a training run: its best/ bundle) for QGIS.

    The ONNX model takes the 24-channel feature stack (geoseg features SCENE --out stack.tif)
    standardised as Deepness does, returns class probabilities, and carries the metadata
    Deepness reads (class names, resolution, tile size, overlap, standardisation).

    \b
    Example:
      geoseg export runs/demo/train/model/best --format onnx --out model.onnx
    """
    from geoseg.export import export_onnx

    result = export_onnx(model_dir, out, opset=opset, tile_size=tile_size, overlap=overlap, resolution_m=resolution,
                         batch=batch, mask_invalid=mask_invalid, exporter=exporter,  # type: ignore[arg-type]
                         check=not no_check)
    for line in result.lines():
        click.echo(line)
