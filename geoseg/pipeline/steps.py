"""The five steps: each turns a :class:`StepContext` into outputs through a stage's public API.

A step declares its parameters (hashed), its inputs (fingerprints, upstream run ids), its
resolved configuration (written beside its outputs), whether its outputs still exist, and
how to run. The runner (``runner.py``) decides *whether* to run; this module only knows
*how*. Output layout under ``RUN_DIR``::

    tile/cubes/            CubeStore               train/model/           MODEL_DIR (best/, final/...)
    evaluate/report/       metrics.json, plots     predict/maps/          <scene_id>.tif (+ sidecars)
    export/model.onnx      ONNX for Deepness
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from geoseg.bundle.config import CONFIG_NAME, read_bundle_config
from geoseg.bundle.runs import BundleChoice, run_bundle_dir
from geoseg.config.catalog import Catalog
from geoseg.errors import ConfigError
from geoseg.pipeline.code import CodeVersion, code_version
from geoseg.pipeline.schema import DEPENDS, Pipeline
from geoseg.pipeline.state import scene_fingerprints, step_key
from geoseg.tiling.store import LEGACY_STORE, MANIFEST_NAME, STORE_KIND, store_is_complete
from geoseg.utils.closest import did_you_mean
from geoseg.utils.outputs import mark_folder, remove_owned

__all__ = ["StepContext", "StepOutcome", "StepRunner", "STEPS", "bundle_dir", "end_process_group"]


@dataclass
class StepContext:
    """Everything a step needs to run.

    Attributes:
        name: the step name.
        pipeline: the validated pipeline.
        catalog: its data catalog.
        run_dir: ``runs/<pipeline>`` (absolute).
        scheduler: Dask scheduler address (tiling and prediction fan-out), or None.
        progress: show progress bars.
        report: write a line to the terminal and the run log.
        upstream: manifests of the steps already completed in this run.
        forced: the user asked to rerun this step from scratch.
        previous: manifest of an unfinished attempt with the same key (resume from it), or None.
        save_progress: persist partial progress (e.g. scenes done) in the running manifest.
    """

    name: str
    pipeline: Pipeline
    catalog: Catalog
    run_dir: Path
    scheduler: str | None
    progress: bool
    report: Callable[[str], None]
    upstream: dict[str, dict[str, Any]] = field(default_factory=dict)
    forced: bool = False
    previous: dict[str, Any] | None = None
    save_progress: Callable[[dict[str, Any]], None] = lambda _: None

    @property
    def step_dir(self) -> Path:
        """This step's folder in the run directory."""
        return self.run_dir / self.name

    @property
    def params(self) -> Any:
        """This step's options from the pipeline file."""
        return getattr(self.pipeline.steps, self.name)

    def run_id(self, step: str) -> str:
        """The run id of the upstream ``step``."""
        return str(self.upstream[step]["run_id"])


@dataclass
class StepOutcome:
    """What a step wrote (``outputs``, stored in its manifest) and a one-line ``summary``."""

    outputs: dict[str, Any]
    summary: str


MAPS_KIND = "land-cover maps"  # the ownership marker of the predict step's maps folder


def store_dir(run_dir: Path) -> Path:
    return run_dir / "tile" / "cubes"


def model_dir(run_dir: Path) -> Path:
    return run_dir / "train" / "model"


def bundle_dir(run_dir: Path, choice: BundleChoice) -> Path:
    """The training run's ``best`` (or ``final``) bundle; ``final`` when no validation ran."""
    return run_bundle_dir(model_dir(run_dir), choice)


def end_process_group() -> None:
    """Leave the training's process group (multi-device runs): the later steps run in this process alone."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class StepRunner(ABC):
    """How one step runs; subclasses set ``name`` and ``code`` and implement ``output`` and ``run``.

    The defaults: the hashed parameters are the step's content parameters; the inputs are
    the ``run_id`` of every step it reads (``DEPENDS``); the code version is the digest of
    the stage's source files (``code``: entry modules whose import closure is hashed, see
    ``geoseg.pipeline.code``); the resolved config is the step's parameters; the outputs
    exist when ``output(ctx)`` is a file.
    """

    name: ClassVar[str]
    code: ClassVar[tuple[str, ...]]

    @abstractmethod
    def output(self, ctx: StepContext) -> Path:
        """The step's main output (file or folder) under the run directory."""

    def params(self, ctx: StepContext) -> dict[str, Any]:
        """The parameters that enter the skip key."""
        return ctx.params.content_params()

    def inputs(self, ctx: StepContext) -> dict[str, Any]:
        """Run id of each upstream step this step depends on."""
        return {dep: ctx.run_id(dep) for dep in DEPENDS[self.name]}

    def code_version(self) -> CodeVersion:
        """The digest of the stage's source files."""
        return code_version(self.code)

    def key(self, ctx: StepContext) -> str:
        """The skip key: parameters, inputs and the digest of the stage's source files."""
        return step_key(self.params(ctx), self.inputs(ctx), self.code_version().digest)

    def config(self, ctx: StepContext) -> dict[str, Any]:
        """The step's resolved configuration (``STEP_DIR/config.yaml``)."""
        return ctx.params.model_dump(mode="json")

    def outputs_exist(self, ctx: StepContext, manifest: dict[str, Any]) -> bool:
        """True when the outputs ``manifest`` records are still there (a skip needs them)."""
        return self.output(ctx).is_file()

    @abstractmethod
    def run(self, ctx: StepContext) -> StepOutcome:
        """Run the step through its stage's public API."""


class _ModelStep(StepRunner):
    """A step that reads the training run's ``best`` or ``final`` bundle (evaluate, predict, export)."""

    def bundle(self, ctx: StepContext) -> Path:
        return bundle_dir(ctx.run_dir, ctx.params.bundle)

    def config(self, ctx: StepContext) -> dict[str, Any]:
        return {"model": str(self.bundle(ctx)), "out": str(self.output(ctx)), **super().config(ctx)}


# ----------------------------------------------------------------------------------- tile
class TileStepRunner(StepRunner):
    name, code = "tile", ("geoseg.tiling",)

    def output(self, ctx: StepContext) -> Path:
        return store_dir(ctx.run_dir) / MANIFEST_NAME

    def params(self, ctx: StepContext) -> dict[str, Any]:
        return {"dataset": ctx.pipeline.dataset, **super().params(ctx)}

    def inputs(self, ctx: StepContext) -> dict[str, Any]:
        return {"scenes": scene_fingerprints(ctx.catalog, ctx.pipeline.dataset)}

    @staticmethod
    def _options(ctx: StepContext) -> Any:
        from geoseg.tiling import TileOptions

        p = ctx.params
        return p.options(TileOptions, workers=None if ctx.scheduler else p.workers, scheduler=ctx.scheduler,
                         overwrite=True, progress=ctx.progress)

    def config(self, ctx: StepContext) -> dict[str, Any]:
        return {"catalog": str(ctx.catalog.source), "dataset": ctx.pipeline.dataset, "out": str(store_dir(ctx.run_dir)),
                **self._options(ctx).model_dump(mode="json")}

    def outputs_exist(self, ctx: StepContext, manifest: dict[str, Any]) -> bool:
        return store_is_complete(store_dir(ctx.run_dir))

    def run(self, ctx: StepContext) -> StepOutcome:
        from geoseg.tiling import tile_dataset

        out = store_dir(ctx.run_dir)
        if ctx.forced and out.exists():
            remove_owned(out, STORE_KIND, legacy=LEGACY_STORE)
        summary = tile_dataset(ctx.catalog, ctx.pipeline.dataset, out, self._options(ctx))
        for line in summary.lines():
            ctx.report(f"  {line}")
        splits = ", ".join(f"{k} {v}" for k, v in summary.splits.items())
        return StepOutcome({"cubes": str(out), "num_cubes": summary.cubes, "splits": summary.splits},
                           f"{out} ({summary.cubes} cubes: {splits})")


# ---------------------------------------------------------------------------------- train
class TrainStepRunner(StepRunner):
    name, code = "train", ("geoseg.train",)

    def output(self, ctx: StepContext) -> Path:
        return bundle_dir(ctx.run_dir, "best") / CONFIG_NAME

    def config(self, ctx: StepContext) -> dict[str, Any]:
        return self._train_config(ctx, resume=False).model_dump(mode="json")

    @staticmethod
    def _train_config(ctx: StepContext, resume: bool):
        from geoseg.config.schema import validate
        from geoseg.pipeline.schema import TrainStep
        from geoseg.train import TrainConfig

        step = ctx.params
        data = step.model_dump(exclude=set(TrainStep.MANAGED))
        data.update(cubes=store_dir(ctx.run_dir), out=model_dir(ctx.run_dir), resume=resume, overwrite=not resume,
                    progress=bool(step.progress and ctx.progress))
        weights, source = data.get("pretrained"), ctx.pipeline.source
        if (isinstance(weights, Path) and not weights.is_absolute() and source is not None
                and not str(weights).startswith("torchgeo:")):  # torchgeo:NAME[=FILE] is a name
            data["pretrained"] = source.parent / weights  # relative to the pipeline file
        return validate(TrainConfig, data, str(ctx.pipeline.source or "pipeline"))

    def run(self, ctx: StepContext) -> StepOutcome:
        from geoseg.train import train

        last = model_dir(ctx.run_dir) / "checkpoints" / "last.ckpt"
        resume = ctx.previous is not None and not ctx.forced and last.is_file()
        if resume:
            ctx.report(f"  resuming the interrupted training from {last}")
        ctx.save_progress({"resume": resume})  # processes of other ranks train with the same decision
        try:
            result = train(self._train_config(ctx, resume))
        finally:
            end_process_group()
        score = "n/a" if result.best_score is None else f"{result.best_score:.4f}"
        best = result.best or result.final
        ctx.report(f"  {result.epochs} epoch(s) in {result.seconds:.0f} s; best {result.monitor} {score} "
                   f"at epoch {result.best_epoch}{' (early stop)' if result.stopped_early else ''}")
        return StepOutcome(
            {"model_dir": str(result.out), "best": str(best) if best else None,
             "final": str(result.final) if result.final else None, "monitor": result.monitor,
             "best_score": result.best_score, "best_epoch": result.best_epoch, "epochs": result.epochs},
            f"{best} ({result.monitor} {score} at epoch {result.best_epoch})",
        )


# ------------------------------------------------------------------------------- evaluate
class EvaluateStepRunner(_ModelStep):
    name, code = "evaluate", ("geoseg.train",)

    def output(self, ctx: StepContext) -> Path:
        return ctx.step_dir / "report" / "metrics.json"

    def config(self, ctx: StepContext) -> dict[str, Any]:
        return {**super().config(ctx), "cubes": str(store_dir(ctx.run_dir)), "out": str(self.output(ctx).parent)}

    def run(self, ctx: StepContext) -> StepOutcome:
        from geoseg.train import EvaluateOptions, evaluate

        p, out = ctx.params, self.output(ctx).parent
        result = evaluate(self.bundle(ctx), store_dir(ctx.run_dir), out, p.options(EvaluateOptions))
        s = result.scores
        line = f"{p.split} mIoU {s.miou:.4f}, OA {s.oa:.4f}, macro F1 {s.f1_macro:.4f}, kappa {s.kappa:.4f}"
        ctx.report(f"  {line} over {result.metrics['num_cubes']} cubes")
        return StepOutcome({"report": str(out), "metrics": str(out / "metrics.json"), "split": p.split,
                            "miou": s.miou, "oa": s.oa, "f1": s.f1_macro, "kappa": s.kappa},
                           f"{out / 'metrics.json'} ({line})")


# -------------------------------------------------------------------------------- predict
@dataclass(frozen=True)
class _Job:
    scene: Any  # geoseg.io.Scene (picklable: sent to Dask workers as is)
    out: Path
    confidence: Path | None
    vector: Path | None

    def file_names(self) -> list[str]:
        """Every file this job writes in the maps folder (with the rasters' sidecars)."""
        from geoseg.stitch.sidecars import aux_xml_path, qml_path

        rasters = [p for p in (self.out, self.confidence) if p is not None]
        files = [*rasters, *(aux_xml_path(p) for p in rasters), *(qml_path(p) for p in rasters), self.vector]
        return [p.name for p in files if p is not None]


class PredictStepRunner(_ModelStep):
    name, code = "predict", ("geoseg.predict",)

    def output(self, ctx: StepContext) -> Path:
        return ctx.step_dir / "maps"

    def _dataset(self, ctx: StepContext) -> str:
        return ctx.params.dataset or ctx.pipeline.dataset

    def params(self, ctx: StepContext) -> dict[str, Any]:
        return {**super().params(ctx), "dataset": self._dataset(ctx)}

    def inputs(self, ctx: StepContext) -> dict[str, Any]:
        return {**super().inputs(ctx), "scenes": scene_fingerprints(ctx.catalog, self._dataset(ctx), ctx.params.scenes)}

    def config(self, ctx: StepContext) -> dict[str, Any]:
        return {"catalog": str(ctx.catalog.source), "scheduler": ctx.scheduler, **super().config(ctx),
                "dataset": self._dataset(ctx)}

    def outputs_exist(self, ctx: StepContext, manifest: dict[str, Any]) -> bool:
        maps = manifest.get("outputs", {}).get("maps", [])  # checked by name: run dirs may be moved
        return bool(maps) and all((self.output(ctx) / Path(m).name).is_file() for m in maps)

    def _jobs(self, ctx: StepContext) -> list[_Job]:
        from geoseg.config import dataset_scenes
        from geoseg.predict.series import series_from_catalog

        p, name = ctx.params, self._dataset(ctx)
        scenes = [cs.scene if cs.series is None else series_from_catalog(cs.series)  # a series: its dates
                  for cs in dataset_scenes(ctx.catalog, name)]
        ids = [s.scene_id for s in scenes]
        for wanted in p.scenes or []:
            if wanted not in ids:
                raise ConfigError(f"dataset {name!r} has no scene {wanted!r}", path=ctx.pipeline.source,
                                  hint=did_you_mean(wanted, ids))
        maps = ctx.step_dir / "maps"
        return [_Job(s, maps / f"{s.scene_id}.tif",
                     maps / f"{s.scene_id}_confidence.tif" if p.confidence else None,
                     maps / f"{s.scene_id}_classes.gpkg" if p.vector else None)
                for s in scenes if p.scenes is None or s.scene_id in p.scenes]

    def run(self, ctx: StepContext) -> StepOutcome:
        from geoseg.pipeline.fanout import predict_jobs
        from geoseg.predict import PredictOptions

        p = ctx.params
        jobs = self._jobs(ctx)
        bundle = self.bundle(ctx)
        self._warn_class_map(ctx, bundle)
        maps = ctx.step_dir / "maps"
        done: dict[str, dict[str, Any]] = {}
        if ctx.previous is not None and not ctx.forced:
            done = {k: v for k, v in ctx.previous.get("progress", {}).get("done", {}).items()
                    if Path(v["map"]).is_file()}
        elif maps.exists():
            remove_owned(maps, MAPS_KIND)  # stale maps of other parameters or scenes; never a user's file
        maps.mkdir(parents=True, exist_ok=True)
        mark_folder(maps, MAPS_KIND, [name for j in jobs for name in j.file_names()])  # before they are written
        pending = [j for j in jobs if j.scene.scene_id not in done]
        if done:
            ctx.report(f"  {len(done)} scene(s) already predicted by the interrupted run; {len(pending)} to go")
        options = p.options(PredictOptions)
        def finished(job: _Job, summary: Any) -> None:
            for line in summary.lines():
                ctx.report(f"  {line}")
            done[job.scene.scene_id] = {"map": str(job.out), "confidence": str(job.confidence) if job.confidence else None,
                                        "vector": str(job.vector) if job.vector else None,
                                        "valid_fraction": summary.valid_fraction, "hectares": summary.hectares}
            ctx.save_progress({"done": done})

        predict_jobs(pending, bundle, options, finished, scheduler=ctx.scheduler, progress=ctx.progress)
        ordered = [done[j.scene.scene_id] for j in jobs]
        where = f" on {ctx.scheduler}" if ctx.scheduler else ""
        return StepOutcome({"maps": [d["map"] for d in ordered], "scenes": {j.scene.scene_id: done[j.scene.scene_id]
                                                                            for j in jobs}},
                           f"{maps} ({len(jobs)} land-cover map(s){where})")

    @staticmethod
    def _warn_class_map(ctx: StepContext, bundle: Path) -> None:
        model_codes = [c.code for c in read_bundle_config(bundle).classes]
        name = ctx.params.dataset or ctx.pipeline.dataset
        ds = ctx.catalog.dataset(name)
        if ds.classes and [c.code for c in ds.classes] != model_codes:
            ctx.report(f"  warning: dataset {name!r} class codes {[c.code for c in ds.classes]} differ from the "
                       f"model's {model_codes}; the maps use the model's class map")


# --------------------------------------------------------------------------------- export
class ExportStepRunner(_ModelStep):
    name, code = "export", ("geoseg.export",)

    def output(self, ctx: StepContext) -> Path:
        return ctx.step_dir / "model.onnx"

    def run(self, ctx: StepContext) -> StepOutcome:
        from geoseg.export import ExportOptions, export_onnx

        out = self.output(ctx)
        result = export_onnx(self.bundle(ctx), out, ctx.params.options(ExportOptions))
        for line in result.lines()[1:]:
            ctx.report(f" {line}")
        return StepOutcome({"onnx": str(out), "opset": result.opset, "max_abs_diff": result.max_abs_diff},
                           f"{out} (opset {result.opset}, tile {result.metadata['tile_size']} px)")


STEPS: dict[str, StepRunner] = {r.name: r for r in (TileStepRunner(), TrainStepRunner(), EvaluateStepRunner(),
                                                     PredictStepRunner(), ExportStepRunner())}
