"""How a feature stack is computed and written (:class:`FeatureOptions`), declared once.

One declaration serves the Python API (``write_feature_stack(scene, out, options=FeatureOptions(block=256))``)
and ``geoseg features`` (its click options are generated from these fields, beside the
:class:`~geoseg.io.SceneOptions` of the scene it reads).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from geoseg.utils.options import OptionsModel

__all__ = ["FeatureOptions", "Compression", "DEFAULT_BLOCK"]

DEFAULT_BLOCK = 512
Compression = Literal["zstd", "deflate", "lzw", "none"]


class FeatureOptions(OptionsModel):
    """Block size, threads, compression and progress of a feature-stack run (not its values)."""

    block: int = Field(DEFAULT_BLOCK, ge=16, description="block size in pixels (memory bound)")
    workers: int | None = Field(None, ge=1, description="threads (default: all cores)")
    compress: Compression = Field("zstd", description="lossless compression (deflate for GDAL < 2.3 readers)")
    progress: bool = Field(True, description="show a progress bar")
