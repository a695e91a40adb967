"""``run_pipeline``: run a pipeline's steps in order, skipping those that are up to date.

For each step the runner computes a key from the step's parameters, its input fingerprints
(scene files; the ``run_id`` of the steps it reads), the geoseg version and a digest of the
source files its stage runs (``geoseg.pipeline.code``: editing the code reruns). A step whose
manifest is ``complete`` with the same key and whose outputs exist is skipped; otherwise it
runs, resuming an interrupted attempt with the same key where the stage can (the tiler's
finished cubes, the trainer's ``last.ckpt``, the scenes already predicted). ``force`` reruns
the named steps from scratch, and with them every step that reads their outputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from geoseg import __version__
from geoseg.errors import ConfigError
from geoseg.pipeline.checks import check_pipeline
from geoseg.pipeline.logs import LOG_NAME, run_log
from geoseg.pipeline.ranks import follow_training, launch_rank
from geoseg.pipeline.schema import DEPENDS, STEP_NAMES, Pipeline, load_pipeline
from geoseg.pipeline.state import (
    new_run_id,
    now,
    read_manifest,
    step_key,
    write_config,
    write_manifest,
    write_yaml,
)
from geoseg.pipeline.steps import STEPS, StepContext
from geoseg.utils.closest import did_you_mean
from geoseg.utils.outputs import check_not_input, claim_folder, legacy_entries, mark_folder

__all__ = ["StepResult", "RunResult", "run_pipeline", "expand_force"]

RUN_KIND = "pipeline run"  # the ownership marker of a run directory (geoseg.utils.outputs)
_LEGACY_RUN = legacy_entries(LOG_NAME, optional=("pipeline.yaml", *STEP_NAMES), contains={LOG_NAME: "geoseg.pipeline"})


@dataclass
class StepResult:
    """One step of a run: ``ran`` or ``skipped`` (up to date), with its manifest."""

    name: str
    status: Literal["ran", "skipped"]
    seconds: float
    manifest: dict[str, Any]

    @property
    def outputs(self) -> dict[str, Any]:
        """The ``outputs`` of the step's manifest."""
        return self.manifest.get("outputs", {})


@dataclass
class RunResult:
    """What :func:`run_pipeline` did; ``lines()`` is the end-of-run report of ``geoseg run``."""

    pipeline: str
    run_dir: Path
    log_file: Path
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    def step(self, name: str) -> StepResult:
        """The result of step ``name``."""
        return next(s for s in self.steps if s.name == name)

    @property
    def ran(self) -> list[str]:
        """Steps that ran."""
        return [s.name for s in self.steps if s.status == "ran"]

    @property
    def skipped(self) -> list[str]:
        """Steps skipped as up to date."""
        return [s.name for s in self.steps if s.status == "skipped"]

    def lines(self) -> list[str]:
        """The end-of-run report of ``geoseg run``, one string per line."""
        out = [f"pipeline {self.pipeline!r} done in {self.seconds:.0f} s — run directory {self.run_dir}",
               f"  log: {self.log_file}"]
        for s in self.steps:
            out.append(f"  {s.name:<9}{s.status:<8} {s.manifest.get('summary', '')}")
        maps = [m for s in self.steps if s.name == "predict" for m in s.outputs.get("maps", [])]
        if maps:
            out += ["", "Open the land-cover map in QGIS: drag it onto the map canvas (or Layer > Add Layer >",
                    "Add Raster Layer); the class names and colours load from the .qml / .tif.aux.xml beside it:"]
            out += [f"  qgis {m}" for m in maps[:5]]
            if len(maps) > 5:
                out.append(f"  ... and {len(maps) - 5} more map(s) in {Path(maps[0]).parent}")
            conf = [c for s in self.steps if s.name == "predict"
                    for c in (v.get("confidence") for v in s.outputs.get("scenes", {}).values()) if c]
            if conf:
                out.append(f"  confidence (max class probability, %): {conf[0]}" + (" ..." if len(conf) > 1 else ""))
        onnx = [s.outputs.get("onnx") for s in self.steps if s.name == "export"]
        if onnx and onnx[0]:
            out.append(f"ONNX model for the Deepness QGIS plugin: {onnx[0]} (input: geoseg features SCENE --out stack.tif)")
        return out


def expand_force(force: Iterable[str], present: list[str]) -> set[str]:
    """The steps to rerun: the named ones (``all`` = every step) and every step downstream of them.

    Raises:
        ConfigError: a name that is not a step of this pipeline.
    """
    names = set()
    for name in force:
        if name == "all":
            names.update(present)
            continue
        if name not in STEP_NAMES:
            raise ConfigError(f"--force {name!r} is not a step", hint=did_you_mean(name, [*STEP_NAMES, "all"]))
        if name not in present:
            raise ConfigError(f"--force {name!r}: this pipeline has no {name} step", hint=f"its steps: {', '.join(present)}")
        names.add(name)
    changed = True
    while changed:
        changed = False
        for step in present:
            if step not in names and any(dep in names for dep in DEPENDS[step]):
                names.add(step)
                changed = True
    return names


def _write_resolved_pipeline(pipeline: Pipeline, run_dir: Path, scheduler: str | None) -> None:
    data = pipeline.model_dump(mode="json", exclude_none=False)
    data.update(name=pipeline.run_name, catalog=str(pipeline.catalog_path()), scheduler=scheduler)
    data["_run"] = {"source": str(pipeline.source) if pipeline.source else None, "geoseg_version": __version__,
                    "started": now()}
    write_yaml(run_dir / "pipeline.yaml", data)


def run_pipeline(
    pipeline: Pipeline | str | Path,
    *,
    run_dir: str | Path | None = None,
    force: Iterable[str] = (),
    scheduler: str | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = print,
) -> RunResult:
    """Run (or resume) a pipeline.

    Args:
        pipeline: a pipeline YAML path or a loaded :class:`Pipeline`.
        run_dir: where the steps write (default ``runs/<pipeline name>`` in the current folder).
        force: steps to rerun from scratch (``all`` for every step); their dependents rerun too.
        scheduler: Dask scheduler address for tiling and the per-scene prediction fan-out
            (overrides the pipeline's ``scheduler``).
        progress: progress bars on the terminal.
        echo: where report lines go besides ``run.log`` (None: only the log file).

    Returns:
        The :class:`RunResult` (steps run or skipped, their manifests, the run directory).

    Raises:
        ConfigError: invalid pipeline, unknown dataset/architecture/encoder, bad ``force``.
        GeosegError: any stage's error; the failed step's manifest records it and the next
            run resumes there.
    """
    start = time.perf_counter()
    p = pipeline if isinstance(pipeline, Pipeline) else load_pipeline(pipeline)
    catalog = p.load_catalog()
    check_pipeline(p, catalog)
    present = p.steps.present()
    forced = expand_force(force, present)
    scheduler = scheduler or p.scheduler
    if scheduler:
        from geoseg.pipeline.fanout import check_scheduler

        check_scheduler(scheduler)
    root = Path(run_dir) if run_dir is not None else Path("runs") / p.run_name
    root = root.resolve()
    claim_folder(root, RUN_KIND, flag="--run-dir", legacy=_LEGACY_RUN)  # a new, empty or earlier run folder
    check_not_input({"--run-dir": root}, [p.source, catalog.source])
    if launch_rank() > 0:  # a training process of another rank: join the training, nothing else
        follow_training(p, catalog, root, forced)
        return RunResult(p.run_name, root, root / LOG_NAME, seconds=time.perf_counter() - start)
    result = RunResult(p.run_name, root, root / LOG_NAME)
    root.mkdir(parents=True, exist_ok=True)
    mark_folder(root, RUN_KIND, [LOG_NAME, "pipeline.yaml", *present])
    with run_log(root / LOG_NAME, echo) as report:
        report(f"geoseg {__version__}: pipeline {p.run_name!r} ({p.source or 'in memory'}) on dataset "
               f"{p.dataset!r} → {root}" + (f", Dask scheduler {scheduler}" if scheduler else ""))
        _write_resolved_pipeline(p, root, scheduler)
        upstream: dict[str, dict[str, Any]] = {}
        for name in present:
            ctx = StepContext(name, p, catalog, root, scheduler, progress, report, upstream, forced=name in forced)
            result.steps.append(_run_step(ctx))
            upstream[name] = result.steps[-1].manifest
        result.seconds = time.perf_counter() - start
        for line in result.lines():
            report(line)
    return result


def _run_step(ctx: StepContext) -> StepResult:
    """Skip the step when it is up to date, else run (or resume) it, keeping its manifest current."""
    name, report, forced = ctx.name, ctx.report, ctx.forced
    spec = STEPS[name]
    params, inputs, code = spec.params(ctx), spec.inputs(ctx), spec.code_version()
    key = step_key(params, inputs, code.digest)
    old = read_manifest(ctx.step_dir)
    if (not forced and old is not None and old.get("status") == "complete" and old.get("key") == key
            and spec.outputs_exist(ctx, old)):
        report(f"[{name}] up to date, skipped (completed {old.get('finished')}): {old.get('summary', '')}")
        return StepResult(name, "skipped", 0.0, old)
    if old is not None and old.get("status") in ("running", "failed") and old.get("key") == key:
        ctx.previous = old
    why = ("forced" if forced else "first run" if old is None else
           "resuming an unfinished run" if ctx.previous is not None else "outputs missing" if old.get("key") == key
           else "code or version changed" if old.get("params") == params and old.get("inputs") == inputs
           else "inputs or parameters changed")
    report(f"[{name}] running ({why})")
    manifest: dict[str, Any] = {
        "step": name, "status": "running", "key": key, "params": params, "inputs": inputs,
        "geoseg_version": __version__, "code": {"digest": code.digest, "files": len(code.files)},
        "started": now(), "pipeline": str(ctx.pipeline.source) if ctx.pipeline.source else None,
        "progress": {k: v for k, v in (ctx.previous or {}).get("progress", {}).items() if k != "resume"},
    }

    def save_progress(progress_state: dict[str, Any]) -> None:
        manifest["progress"] = progress_state
        write_manifest(ctx.step_dir, manifest)

    ctx.save_progress = save_progress
    ctx.step_dir.mkdir(parents=True, exist_ok=True)
    write_config(ctx.step_dir, spec.config(ctx))
    write_manifest(ctx.step_dir, manifest)
    t0 = time.perf_counter()
    try:
        outcome = spec.run(ctx)
    except BaseException as err:
        manifest.update(status="failed", finished=now(), error=f"{type(err).__name__}: {err}")
        write_manifest(ctx.step_dir, manifest)
        report(f"[{name}] failed: {type(err).__name__}: {err} (rerun the same command to resume)")
        raise
    seconds = time.perf_counter() - t0
    manifest.update(status="complete", finished=now(), seconds=round(seconds, 2), outputs=outcome.outputs,
                    summary=outcome.summary, run_id=new_run_id())
    manifest.pop("progress", None)
    write_manifest(ctx.step_dir, manifest)
    report(f"[{name}] done in {seconds:.1f} s: {outcome.summary}")
    return StepResult(name, "ran", seconds, manifest)

