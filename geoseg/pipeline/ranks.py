"""Distributed training from a pipeline: the processes of ranks > 0 only join the training.

With ``devices > 1`` (or ``num_nodes > 1``) Lightning runs the train step in several processes:
on one machine it re-launches the same command (``geoseg run PIPELINE.yaml``) for ranks 1..N-1
with ``LOCAL_RANK`` set; under ``srun`` every task starts the command with ``SLURM_PROCID``.
Those processes must not run the pipeline a second time. Here, a process of rank > 0 waits
until the steps before ``train`` are complete (rank 0 runs them), builds the very same
training configuration, joins the training, and returns: it writes no manifest, no log and
none of the later steps' outputs.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from geoseg.errors import ConfigError
from geoseg.pipeline.state import read_manifest
from geoseg.pipeline.steps import STEPS, StepContext, TrainStepRunner, end_process_group

__all__ = ["launch_rank", "follow_training"]

POLL_SECONDS = 5.0
CLOCK_SKEW = 120.0  # seconds of clock difference tolerated between nodes


def launch_rank() -> int:
    """This process's rank in a distributed launch (0 when not launched as one of several)."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 0


def _spawned_by_lightning() -> bool:
    """A rank > 0 process that Lightning started from rank 0 (its manifest is already written)."""
    return not any(os.environ.get(n, "0").strip() not in ("", "0") for n in ("RANK", "SLURM_PROCID"))


def _wait(ctx: StepContext, key: str, status: str, timeout: float, fresh_after: float | None = None,
          needs: str | None = None) -> dict[str, Any]:
    """Poll the step's manifest until rank 0 wrote it with ``status`` and the same key."""
    deadline = time.monotonic() + timeout
    while True:
        m = read_manifest(ctx.step_dir)
        if m and m.get("key") == key:
            fresh = fresh_after is None or datetime.fromisoformat(m.get("started", "1970-01-01T00:00:00+00:00")
                                                                  ).timestamp() >= fresh_after
            if m.get("status") == status and fresh and (needs is None or needs in m.get("progress", {})):
                return m
            if m.get("status") == "failed" and fresh:
                raise ConfigError(f"step {ctx.name!r} failed on rank 0", path=ctx.step_dir / "manifest.json")
        if time.monotonic() > deadline:
            raise ConfigError(f"rank {launch_rank()} waited {timeout:.0f} s for step {ctx.name!r} of rank 0",
                              path=ctx.step_dir, hint="check rank 0's run.log")
        time.sleep(POLL_SECONDS)


def follow_training(p: Any, catalog: Any, root: Path, forced: set[str], timeout: float = 48 * 3600) -> None:
    """The whole pipeline run of a process of rank > 0 (see the module docstring).

    Rank 0 records in the train step's running manifest whether it resumes from
    ``last.ckpt``; this process waits for that record and trains with the same decision.
    """
    from geoseg.train import train

    started = time.time()
    present = p.steps.present()
    if "train" not in present:
        return
    upstream: dict[str, dict[str, Any]] = {}
    for name in present[: present.index("train")]:
        ctx = StepContext(name, p, catalog, root, None, False, lambda _: None, upstream, name in forced)
        upstream[name] = _wait(ctx, STEPS[name].key(ctx), "complete", timeout)
    ctx = StepContext("train", p, catalog, root, None, False, lambda _: None, upstream, "train" in forced)
    runner = TrainStepRunner()
    key = runner.key(ctx)
    # srun/torchrun start every rank at once: wait for this attempt's manifest, not an old one
    fresh_after = None if _spawned_by_lightning() else started - CLOCK_SKEW
    manifest = _wait(ctx, key, "running", timeout, fresh_after=fresh_after, needs="resume")
    try:
        train(runner._train_config(ctx, resume=bool(manifest["progress"]["resume"])))
    finally:
        end_process_group()
