"""The evaluation stage's options (:class:`EvaluateOptions`), declared once.

One declaration serves the Python API (``evaluate(..., options)``), the pipeline's
``evaluate:`` step and ``geoseg evaluate`` (its click options are generated from these fields).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from geoseg.config.schema import OptionsModel
from geoseg.utils.checks import DeviceName, EngineName

__all__ = ["EvaluateOptions"]


class EvaluateOptions(OptionsModel):
    """Which split is scored, how it is run, and how many example figures are drawn."""

    split: Literal["train", "val", "test"] = Field("test", description="split of the CubeStore to score")
    batch_size: int = Field(16, ge=1, description="cubes per forward pass")
    target_size: int | None = Field(None, ge=8, description="score at this size: images and labels resized "
                                    "(nearest) to N x N (default: the model's training resize, if any)")
    save_examples: int = Field(4, ge=0, description="example figures to draw (natural colour | truth | prediction "
                               "| errors): the worst cube, one per class, random ones")
    fp16: bool = Field(False, description="reduced precision (float16 on CUDA, bfloat16 on the CPU)")
    device: DeviceName = Field("auto", description="device: auto (CUDA when available), cpu, cuda, cuda:N, mps")
    engine: EngineName = Field("auto", description="inference engine: auto (on a CPU: onnxruntime when installed, "
                               "exact for the model and the split is large enough, else torch: the scores are "
                               "float32's), torch, torch-bf16 (approximate scores), onnxruntime")
    num_workers: int | None = Field(None, ge=0, description="DataLoader worker processes (default: automatic)")
    compile: bool = Field(False, description="torch.compile the model")
