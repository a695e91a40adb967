"""The export stage's options (:class:`ExportOptions`), declared once.

One declaration serves the Python API (``export_onnx(..., options)``), the pipeline's
``export:`` step and ``geoseg export`` (its click options are generated from these fields).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from geoseg.config.schema import OptionsModel
from geoseg.errors import ConfigError

__all__ = ["ExportOptions", "Exporter", "MAX_OPSET", "MIN_OPSET"]

MAX_OPSET = 20  # Deepness pins onnxruntime 1.17
MIN_OPSET = 13
Exporter = Literal["torchscript", "dynamo"]


class ExportOptions(OptionsModel):
    """How a model bundle becomes an ONNX file for the Deepness QGIS plugin."""

    format: Literal["onnx"] = Field("onnx", description="export format")
    opset: int = Field(17, ge=MIN_OPSET, le=MAX_OPSET, description=f"ONNX opset (Deepness needs <= {MAX_OPSET})")
    tile_size: int | None = Field(None, ge=8, description="input tile size in pixels (default: the model's window)")
    overlap: int = Field(25, ge=0, lt=100, description="Deepness tile overlap in percent")
    resolution: float = Field(10.0, gt=0, allow_inf_nan=False, description="input pixel size in metres")
    seg_thresh: float = Field(0.0, ge=0, le=1, description="Deepness's probability threshold (0: every pixel gets "
                              "its most probable class)")
    batch: int | None = Field(None, ge=1, description="static batch size (default: dynamic)")
    mask_invalid: bool = Field(True, description="re-apply the zero mask of invalid pixels inside the graph (see "
                               "docs/qgis.md)")
    exporter: Exporter = Field("torchscript", description="PyTorch ONNX exporter")
    check: bool = Field(True, description="run the file with onnxruntime as Deepness does and compare with PyTorch")

    @field_validator("opset", mode="before")
    @classmethod
    def _opset(cls, value: Any) -> Any:
        if isinstance(value, int) and not MIN_OPSET <= value <= MAX_OPSET:
            raise ConfigError(f"--opset: {value} is outside {MIN_OPSET}..{MAX_OPSET}",
                              hint=f"Deepness runs onnxruntime 1.17: use --opset {MAX_OPSET} or lower")
        return value
