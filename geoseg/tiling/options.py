"""The tiling stage's options: :class:`TilingParams` (a store's content) and :class:`TileOptions`.

One declaration serves the Python API (``tile_dataset(..., options)``), the pipeline's
``tile:`` step and ``geoseg tile`` (its click options are generated from these fields).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from geoseg.config.schema import OptionsModel
from geoseg.errors import ConfigError
from geoseg.tiling.layout import check_tiling
from geoseg.tiling.split import check_fractions

__all__ = ["TilingParams", "TileOptions"]


class TilingParams(OptionsModel):
    """Parameters that define a store's content (changing one means a different store).

    Checked when constructed (a :class:`~geoseg.errors.ConfigError` names the option): the
    cube size, overlap and split block by :func:`~geoseg.tiling.layout.check_tiling`, the
    split fractions by :func:`~geoseg.tiling.split.check_fractions`.
    """

    cube_size: int = Field(256, ge=8, le=10980, description="cube height and width (pixels)")
    overlap: int = Field(32, ge=0, description="pixels shared by neighbouring cubes")
    min_valid: float = Field(0.2, ge=0, le=1, description="skip cubes with a smaller fraction of valid pixels")
    split: tuple[float, float, float] = Field((0.7, 0.15, 0.15), description="train,val,test fractions of the "
                                              "spatial blocks")
    split_block: int = Field(4, ge=1, description="cubes per side of a split block (blocks never overlap)")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the block split")
    group: int = Field(4, ge=1, description="cubes of one row read together per task (speed only, same store)")
    store: Literal["features", "compact"] = Field(
        "features", description="what each cube holds: the recipe's float32 channels (features), or the DN of "
        "its bands + the valid mask, the channels computed on the training device (compact: ~12 instead of 96 "
        "bytes per pixel for s2_24 from 16-bit band files; the same values bit for bit, docs/tiling.md)")

    @field_validator("min_valid", mode="before")
    @classmethod
    def _min_valid(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not 0.0 <= value <= 1.0:  # named as given (2, not 2.0)
            raise ConfigError(f"min-valid {value} must be between 0 and 1", hint="e.g. --min-valid 0.2")
        return value

    @field_validator("split", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return check_fractions(value) if isinstance(value, list | tuple) else value

    @model_validator(mode="after")
    def _tiling(self) -> TilingParams:
        check_tiling(self.cube_size, self.overlap, self.split_block)
        return self

    @property
    def stride(self) -> int:
        """Pixels between the starts of neighbouring cubes of a split block."""
        return self.cube_size - self.overlap

    def params(self) -> TilingParams:
        """The content parameters alone (drops a subclass's run options)."""
        return TilingParams(**{k: getattr(self, k) for k in TilingParams.model_fields})


class TileOptions(TilingParams):
    """Every option of a tiling run: the content parameters plus how and where it runs."""

    RUN_OPTIONS: ClassVar[tuple[str, ...]] = ("workers", "scheduler", "overwrite", "progress")

    workers: int | None = Field(None, ge=1, description="worker processes of the local Dask cluster "
                                "(default: one per core)")
    scheduler: str | None = Field(None, description="address of an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")
    overwrite: bool = Field(False, description="rebuild a store made with other parameters or sources")
    progress: bool = Field(True, description="show a progress bar")

    @model_validator(mode="after")
    def _one_cluster(self) -> TileOptions:
        if self.workers is not None and self.scheduler is not None:
            raise ConfigError("give either --workers (local cluster) or --scheduler (existing cluster), not both")
        return self
