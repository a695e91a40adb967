"""The prediction stage's options (:class:`PredictOptions`), declared once.

One declaration serves the Python API (``predict_scene(..., options)``), the pipeline's
``predict:`` step and ``geoseg predict`` (its click options are generated from these fields).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from geoseg.config.schema import OptionsModel
from geoseg.errors import ConfigError
from geoseg.utils.checks import DeviceName, EngineName

__all__ = ["PredictOptions", "check_window"]


def check_window(window: int, overlap: int) -> None:
    """The window rule: at least one pixel, and an overlap in ``[0, window)``.

    Raises:
        ConfigError: the window or the overlap is out of range.
    """
    if window < 1:
        raise ConfigError(f"window must be a positive number of pixels, got {window}")
    if overlap < 0 or overlap >= window:
        raise ConfigError(f"--overlap: {overlap} must be smaller than --window {window}",
                          hint=f"e.g. --overlap {max(window // 4, 0)} with --window {window}")


class PredictOptions(OptionsModel):
    """How a scene is predicted: windows, batches, device and precision, extras of the COG."""

    window: int | None = Field(None, ge=8, description="window size in pixels (default: the model bundle's "
                                  "predict_window, its fastest size measured when training started)")
    overlap: int | None = Field(None, ge=0, description="pixels shared by neighbouring windows (default: window/4)")
    batch_size: int = Field(8, ge=1, description="windows per forward pass")
    device: DeviceName = Field("auto", description="device: auto (CUDA when available, else the CPU), cpu, cuda, "
                              "cuda:N, mps")
    engine: EngineName = Field("auto", description="inference engine: auto (on a CPU: torch-bf16 where the "
                               "CPU has native bfloat16 and its map agrees with float32 on the first batch, else "
                               "onnxruntime when installed, exact for the model and the run is large enough; else "
                               "torch), torch, torch-bf16, onnxruntime")
    fp16: bool = Field(True, description="half-precision autocast on CUDA (the CPU runs float32)")
    tta: bool = Field(False, description="average predictions over flips and 90° rotations (8× slower)")
    overviews: Literal["mode", "nearest"] = Field("mode", description="resampling of the COG overviews (never "
                                                  "averaging class codes)")
    workers: int | None = Field(None, ge=1, description="feature-reading threads (default: half the cores, 1-4)")
    progress: bool = Field(True, description="show a progress bar")
    strict: bool = Field(False, description="refuse a scene that does not fit the model's training data (another "
                         "processing level, reflectance far from the training data's) instead of warning")

    @model_validator(mode="after")
    def _window(self) -> PredictOptions:
        if self.window is not None and self.overlap is not None:
            check_window(self.window, self.overlap)
        return self
