"""``pipelines/*.yaml``: a dataset of the catalog and the steps to run on it, as typed models.

Unknown keys fail with the file, the key and the closest valid key (the catalog's
``StrictModel``/``load_yaml`` machinery). The train step *is* the trainer's
:class:`~geoseg.train.TrainConfig` (minus the paths the runner owns), so every training
option — strategies, devices, nodes, precision — is reachable from the pipeline YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field, PrivateAttr, field_validator, model_validator

from geoseg.bundle.runs import BundleChoice
from geoseg.config.catalog import Catalog, load_catalog
from geoseg.config.schema import OptionsModel, StrictModel, load_yaml
from geoseg.errors import ConfigError
from geoseg.export.options import ExportOptions
from geoseg.predict.options import PredictOptions
from geoseg.tiling.options import TileOptions
from geoseg.train.config import TrainConfig
from geoseg.train.evaluate_options import EvaluateOptions

__all__ = [
    "STEP_NAMES",
    "DEPENDS",
    "StepName",
    "TileStep",
    "TrainStep",
    "EvaluateStep",
    "PredictStep",
    "ExportStep",
    "Steps",
    "Pipeline",
    "load_pipeline",
    "default_catalog",
]

OptionsT = TypeVar("OptionsT", bound=OptionsModel)
StepName = Literal["tile", "train", "evaluate", "predict", "export"]
STEP_NAMES: tuple[StepName, ...] = ("tile", "train", "evaluate", "predict", "export")
# what each step reads: a step reruns when one of these reran
DEPENDS: dict[str, tuple[str, ...]] = {
    "tile": (),
    "train": ("tile",),
    "evaluate": ("tile", "train"),
    "predict": ("train",),
    "export": ("train",),
}


class _Step(StrictModel):
    """A step's parameters: its stage's options model, less what the runner decides itself."""

    # fields that change where or how fast a step runs, not what it writes (not hashed)
    EXECUTION: ClassVar[frozenset[str]] = frozenset()
    # options the runner sets (paths, resume, the cluster): refused in the pipeline file
    MANAGED: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _runner_owned(self) -> _Step:
        owned = [k for k in self.MANAGED if k in self.model_fields_set]
        if owned:
            raise ConfigError(f"{', '.join(owned)} is set by the pipeline runner; remove it from this step")
        return self

    def content_params(self) -> dict[str, Any]:
        """The parameters that decide the step's outputs (hashed to decide reruns)."""
        return self.model_dump(mode="json", exclude={*self.EXECUTION, *self.MANAGED})

    def options(self, model: type[OptionsT], **runner: Any) -> OptionsT:
        """The stage's options model from this step's fields of the same names and the runner's choices."""
        return model(**{**{k: getattr(self, k) for k in model.model_fields if k not in self.MANAGED}, **runner})


class TileStep(TileOptions, _Step):
    """:class:`~geoseg.tiling.TileOptions` (``geoseg tile``); the runner sets the scheduler (the
    pipeline's ``scheduler:``), ``overwrite`` and ``progress``."""

    EXECUTION: ClassVar[frozenset[str]] = frozenset({"workers", "group"})
    MANAGED: ClassVar[tuple[str, ...]] = ("scheduler", "overwrite", "progress")


class TrainStep(TrainConfig, _Step):
    """The trainer's :class:`~geoseg.train.TrainConfig`; ``cubes``, ``out``, ``resume`` and
    ``overwrite`` are set by the runner (the tile step's store, ``train/model``, resume after a
    crash, replace after a change)."""

    EXECUTION: ClassVar[frozenset[str]] = frozenset({"progress", "num_workers"})
    MANAGED: ClassVar[tuple[str, ...]] = ("cubes", "data_root", "out", "resume", "overwrite")


class EvaluateStep(EvaluateOptions, _Step):
    """:class:`~geoseg.train.EvaluateOptions` (``geoseg evaluate``) and which bundle is scored."""

    EXECUTION: ClassVar[frozenset[str]] = frozenset({"batch_size", "num_workers", "compile"})
    bundle: BundleChoice = Field("best", description="which bundle of the training run")


class PredictStep(PredictOptions, _Step):
    """:class:`~geoseg.predict.PredictOptions` (``geoseg predict``), which scenes, and the extras
    written beside each map; ``progress`` is the runner's."""

    EXECUTION: ClassVar[frozenset[str]] = frozenset({"batch_size", "workers"})
    MANAGED: ClassVar[tuple[str, ...]] = ("progress",)
    dataset: str | None = Field(None, description="catalog dataset whose scenes are predicted (default: the pipeline's)")
    scenes: list[str] | None = Field(None, description="scene ids to predict (default: every scene of the dataset)")
    bundle: BundleChoice = "best"
    confidence: bool = Field(True, description="also write <scene>_confidence.tif (max probability, 0-100)")
    vector: bool = Field(False, description="also write <scene>_classes.gpkg (class polygons)")


class ExportStep(ExportOptions, _Step):
    """:class:`~geoseg.export.ExportOptions` (``geoseg export``) and which bundle is exported."""

    EXECUTION: ClassVar[frozenset[str]] = frozenset({"check"})
    bundle: BundleChoice = Field("best", description="which bundle of the training run")


class Steps(StrictModel):
    """The steps to run, in this order; omit a step to leave it out."""

    tile: TileStep | None = None
    train: TrainStep | None = None
    evaluate: EvaluateStep | None = None
    predict: PredictStep | None = None
    export: ExportStep | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        return {} if value is None else value  # "evaluate:" with no options = the defaults

    def present(self) -> list[str]:
        """Names of the steps the pipeline declares, in run order."""
        return [name for name in STEP_NAMES if getattr(self, name) is not None]


def default_catalog() -> Path:
    """The repository's ``data_catalog.yaml`` (beside the ``geoseg`` package of a source checkout)."""
    return Path(__file__).resolve().parents[2] / "data_catalog.yaml"


class Pipeline(StrictModel):
    """A pipeline file: which dataset, which steps with which parameters."""

    schema_version: Literal[1] = 1
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="run name (default: the file name)")
    description: str = ""
    catalog: Path | None = Field(None, description="data_catalog.yaml, relative to this file (default: the repo's)")
    dataset: str = Field(description="dataset of the catalog that is tiled and trained on")
    scheduler: str | None = Field(None, description="Dask scheduler address for tiling and prediction fan-out")
    steps: Steps
    _source: Path | None = PrivateAttr(None)

    @property
    def source(self) -> Path | None:
        """The file this pipeline was read from (relative paths are relative to its folder)."""
        return self._source

    @model_validator(mode="after")
    def _dependencies(self) -> Pipeline:
        present = self.steps.present()
        if not present:
            raise ValueError("no steps: add at least one of " + ", ".join(STEP_NAMES))
        for step in present:
            missing = [d for d in DEPENDS[step] if d not in present]
            if missing:
                raise ValueError(f"step {step!r} needs step(s) {', '.join(missing)} in the same pipeline")
        return self

    @property
    def run_name(self) -> str:
        """The run's name: ``name``, else the pipeline file's stem."""
        return self.name or (self.source.stem if self.source else "pipeline")

    def catalog_path(self) -> Path:
        """The data catalog file: ``catalog`` (a relative path from the pipeline file's folder), else the repository's."""
        if self.catalog is None:
            return default_catalog()
        if self.catalog.is_absolute() or self.source is None:
            return self.catalog
        return (self.source.parent / self.catalog).resolve()

    def resolved(self, scheduler: str | None = None) -> dict[str, Any]:
        """This pipeline with every default filled, as a mapping that :func:`load_pipeline` reads back to it.

        The name and the catalog are filled in (the catalog and the train step's weights as
        absolute paths, so the file may live anywhere); the options the runner sets are left
        out, as in a pipeline file. ``scheduler`` overrides the pipeline's (``geoseg run --scheduler``).
        """
        data = self.model_dump(mode="json", exclude={"steps"})
        data.update(name=self.run_name, catalog=str(self.catalog_path()), scheduler=scheduler or self.scheduler)
        steps: dict[str, Any] = {}
        for name in self.steps.present():
            step = getattr(self.steps, name)
            steps[name] = step.model_dump(mode="json", exclude=set(step.MANAGED))
        weights = self.steps.train.pretrained if self.steps.train else None
        if isinstance(weights, Path) and not str(weights).startswith("torchgeo:") and self.source is not None:
            steps["train"]["pretrained"] = str(self.source.parent / weights)  # as the train step reads it
        data["steps"] = steps
        return data

    def load_catalog(self) -> Catalog:
        """The catalog, with the pipeline's datasets checked (unknown name → closest one)."""
        path = self.catalog_path()
        if not path.is_file():
            raise ConfigError("data catalog not found", path=path,
                              hint=f"set 'catalog:' in {self.source or 'the pipeline'} (relative to that file)")
        catalog = load_catalog(path)
        for name in {self.dataset, *([self.steps.predict.dataset] if self.steps.predict else [])} - {None}:
            if name not in catalog.datasets:
                from geoseg.utils.closest import did_you_mean

                raise ConfigError(f"dataset {name!r} is not in {path}", path=self.source,
                                  hint=did_you_mean(str(name), catalog.datasets))
        return catalog


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and validate a pipeline YAML (unknown keys → one-line ConfigError naming the closest key)."""
    pipeline = load_yaml(path, Pipeline)
    pipeline._source = Path(path).resolve()
    return pipeline
