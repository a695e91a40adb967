"""``tile_dataset``: cut every scene of a catalog dataset into a CubeStore, in parallel with Dask.

Flow: plan (cheap) → check or resume an existing store → run the pending tasks on a
``distributed`` cluster (a LocalCluster of worker processes by default, or any scheduler by
address) → finalize (compact chunks, index, statistics, manifest ``complete: true`` last).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from geoseg.config.catalog import Catalog
from geoseg.errors import ConfigError, EmptyAreaError
from geoseg.tiling.finalize import finalize, read_manifest
from geoseg.tiling.plan import (
    TilePlan,
    TilingParams,
    content_key,
    describe_difference,
    is_empty_dir,
    make_plan,
    remove_tree,
)
from geoseg.tiling.store import MANIFEST_NAME, create_arrays, write_json_atomic
from geoseg.tiling.worker import TileTask, load_record, run_task
from geoseg.utils.memory import malloc_environ

__all__ = ["TileSummary", "tile_dataset", "local_cluster"]

log = logging.getLogger(__name__)


@dataclass
class TileSummary:
    """What a tiling run did (returned by :func:`tile_dataset`, printed by ``geoseg tile``)."""

    store: Path
    dataset: str
    scenes: int
    candidates: int
    cubes: int
    skipped: dict[str, int]
    class_counts: dict[int, int]
    class_names: dict[int, str]
    computed: int  # cubes (candidates) computed in this run
    resumed: int  # candidates found complete from an earlier, interrupted run
    seconds: float
    scene_megapixels: float
    workers: int | None
    scheduler: str | None
    tiling_seconds: float = 0.0  # the parallel phase alone (no planning, cluster start or finalising)
    splits: dict[str, int] = field(default_factory=dict)
    already_complete: bool = False

    @property
    def throughput(self) -> float:
        """Scene megapixels tiled per second of the parallel phase (0 when nothing was computed)."""
        if self.already_complete or self.tiling_seconds <= 0:
            return 0.0
        return self.scene_megapixels * (self.computed / max(self.candidates, 1)) / self.tiling_seconds

    def lines(self) -> list[str]:
        if self.already_complete:
            return [f"{self.store}: already complete ({self.cubes} cubes of dataset {self.dataset!r}); nothing to do"]
        skipped = ", ".join(f"{n} {why}" for why, n in self.skipped.items() if n) or "none"
        where = self.scheduler or f"LocalCluster, {self.workers} worker process(es)"
        out = [
            f"wrote {self.store}: {self.cubes} cubes from {self.scenes} scene(s) of dataset {self.dataset!r}",
            f"  candidates {self.candidates}; skipped: {skipped}"
            + (f"; {self.resumed} reused from an interrupted run" if self.resumed else ""),
            "  splits: " + ", ".join(f"{k} {v}" for k, v in self.splits.items()),
        ]
        if self.class_counts:
            total = sum(self.class_counts.values()) or 1
            out.append("  class pixels: " + ", ".join(
                f"{self.class_names[c]} ({c}) {n} ({100 * n / total:.1f}%)" for c, n in self.class_counts.items()))
        out.append(f"  {self.seconds:.1f} s in all, {self.tiling_seconds:.1f} s tiling on {where}: "
                   f"{self.throughput:.2f} Mpx/s of scene")
        return out


@contextlib.contextmanager
def _quiet_distributed() -> Iterator[None]:
    """Keep distributed's INFO chatter out of the output unless geoseg logs at DEBUG (-vv)."""
    import distributed  # noqa: F401  (its import configures the logger; adjust it afterwards)

    logger = logging.getLogger("distributed")
    old = logger.level
    if not log.isEnabledFor(logging.DEBUG):
        logger.setLevel(max(old, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(old)


@contextlib.contextmanager
def _client(workers: int | None, scheduler: str | None, client) -> Iterator:
    if client is not None:
        yield client
        return
    from distributed import Client

    if scheduler:
        try:
            c = Client(scheduler, timeout="20s")
        except OSError as err:
            raise ConfigError(f"cannot reach the Dask scheduler at {scheduler} ({err})",
                              hint="check the address (tcp://HOST:PORT) and that the scheduler is running") from None
        with c:
            yield c
        return
    with local_cluster(workers) as c:
        yield c


@contextlib.contextmanager
def local_cluster(workers: int | None = None) -> Iterator:
    """A ``distributed`` LocalCluster of single-threaded worker processes and its Client.

    Args:
        workers: worker processes (default: one per core).
    """
    import dask
    from distributed import Client, LocalCluster

    n = workers or os.cpu_count() or 1
    # distributed sets a 64 kB trim threshold for its workers, which makes every task page-fault its
    # ~100 MB of temporaries afresh (~30 % of its CPU time); tiling tasks have a bounded footprint
    config = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in malloc_environ().items()}
    config["distributed.worker.profile.enabled"] = False  # its stack sampling costs ~10 % of a worker's CPU
    with dask.config.set(config), LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
    ) as cluster, Client(cluster) as c:
        yield c


def _prepare_store(plan: TilePlan, overwrite: bool) -> dict | None:
    """Create, resume or refuse the output directory; returns the existing complete manifest if any."""
    out = plan.out
    old = read_manifest(out) if out.exists() else None
    if out.exists() and old is None and not is_empty_dir(out):
        if not overwrite:
            raise ConfigError("output folder exists and is not a CubeStore", path=out,
                              hint="choose another --out, or add --overwrite to replace it")
        remove_tree(out)
    if old is not None and content_key(old) != content_key(plan.manifest):
        if not overwrite:
            raise ConfigError(f"existing CubeStore was built differently: {describe_difference(old, plan.manifest)}",
                              path=out, hint="add --overwrite to rebuild it, or choose another --out")
        log.info("rebuilding %s: %s", out, describe_difference(old, plan.manifest))
        remove_tree(out)
        old = None
    if old is not None and old.get("complete"):
        remove_tree(plan.staging)  # a crash after completion may leave it behind
        return old
    if old is None or not plan.staging_arrays.exists():
        remove_tree(plan.staging)
        out.mkdir(parents=True, exist_ok=True)
        plan.records.mkdir(parents=True)
        create_arrays(plan.staging_arrays, len(plan.windows), plan.recipe.num_channels, plan.params.cube_size,
                      plan.has_labels)
    write_json_atomic(out / MANIFEST_NAME, plan.manifest)  # complete: false
    return None


def _run(tasks: list[TileTask], client, progress: bool) -> list[dict]:
    from distributed import as_completed
    from tqdm.auto import tqdm

    if not tasks:
        return []
    run = uuid.uuid4().hex[:12]
    bar = tqdm(total=sum(len(t.cubes) for t in tasks), desc="tiling", unit="cube", disable=not progress,
               dynamic_ncols=True)
    futures = client.map(run_task, tasks, pure=False, key=[f"geoseg-tile-{run}-{t.task_id}" for t in tasks])
    records = []
    try:
        for future in as_completed(futures):
            record = future.result()
            records.append(record)
            bar.update(len(record["cubes"]))
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        bar.close()
    return records


def tile_dataset(
    catalog: str | Path | Catalog,
    dataset: str,
    out: str | Path,
    *,
    cube_size: int = 256,
    overlap: int = 32,
    min_valid: float = 0.2,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    split_block: int = 4,
    workers: int | None = None,
    scheduler: str | None = None,
    client=None,
    overwrite: bool = False,
    progress: bool = True,
    group: int = 4,
) -> TileSummary:
    """Cut every scene of ``dataset`` into masked feature cubes and write the CubeStore ``out``.

    Args:
        catalog: path of ``data_catalog.yaml`` or a loaded :class:`~geoseg.config.Catalog`.
        dataset: dataset name in the catalog.
        out: store directory (created; an interrupted run with the same inputs is resumed).
        cube_size: cube height and width in pixels.
        overlap: pixels shared by neighbouring cubes of a split block (stride = size - overlap).
        min_valid: cubes whose valid-pixel fraction is below this are skipped.
        split: train/val/test fractions of the split blocks.
        seed: seed of the block shuffle.
        split_block: cubes per split-block side (cubes of different blocks never overlap).
        workers: worker processes of the default LocalCluster (default: one per core).
        scheduler: address of an existing Dask scheduler (``tcp://HOST:PORT``) instead.
        client: an existing ``distributed.Client`` to use instead (wins over both).
        overwrite: rebuild a store built with other parameters or sources.
        progress: show a progress bar.
        group: cubes of one row read together per task (a speed knob; no effect on content).

    Raises:
        CatalogError, BandError, LabelError, CRSMismatchError, ConfigError (options, or an
        existing store built differently without ``overwrite``), EmptyAreaError (no cube
        reaches ``min_valid``; nothing is left behind).
    """
    start = time.perf_counter()
    params = TilingParams(cube_size, overlap, min_valid, tuple(split), seed, split_block, group)  # type: ignore[arg-type]
    plan = make_plan(catalog, dataset, out, params)
    classes = plan.dataset.classes
    existing = _prepare_store(plan, overwrite)
    common = {"store": plan.out, "dataset": dataset, "scenes": len(plan.scenes), "candidates": len(plan.windows),
              "class_names": {c.code: c.name for c in classes}, "workers": None if scheduler or client else
              (workers or os.cpu_count()), "scheduler": scheduler}
    if existing is not None:
        return TileSummary(**common, cubes=existing["num_cubes"], skipped=existing.get("skipped", {}),
                           class_counts={}, computed=0, resumed=0, seconds=time.perf_counter() - start,
                           scene_megapixels=plan.scene_pixels / 1e6, splits=existing.get("splits", {}),
                           already_complete=True)
    tasks = plan.tasks()
    done = {t.task_id: load_record(t) for t in tasks}
    pending = [t for t in tasks if done[t.task_id] is None]
    resumed = sum(len(t.cubes) for t in tasks if done[t.task_id] is not None)
    if resumed:
        log.info("resuming %s: %d of %d cubes already done", plan.out, resumed, len(plan.windows))
    tiling_seconds = 0.0
    with _quiet_distributed(), _client(workers, scheduler, client) as c:
        t0 = time.perf_counter()
        for record in _run(pending, c, progress):
            done[record["task"]] = record
        tiling_seconds = time.perf_counter() - t0
    records = [done[t.task_id] for t in tasks]
    if not any(e["kept"] for r in records for e in r["cubes"]):
        remove_tree(plan.out)
        raise EmptyAreaError(
            f"no cube of dataset {dataset!r} reaches --min-valid {min_valid} "
            f"({len(plan.windows)} candidates; best valid fraction "
            f"{max((e['valid_fraction'] for r in records for e in r['cubes']), default=0):.3f})",
            path=plan.out, hint="lower --min-valid, or check the scenes' masks (geoseg inspect SCENE)",
        )
    outcome, stats = finalize(plan, records)
    remove_tree(plan.staging)
    kept = int(outcome.kept.sum())
    counts = {c.code: int(stats["class_counts"][str(c.code)]) for c in classes} if plan.has_labels else {}
    manifest = read_manifest(plan.out) or {}
    return TileSummary(**common, cubes=kept, skipped=outcome.skipped, class_counts=counts,
                       computed=len(plan.windows) - resumed, resumed=resumed, seconds=time.perf_counter() - start,
                       tiling_seconds=tiling_seconds,
                       scene_megapixels=plan.scene_pixels / 1e6, splits=manifest.get("splits", {}))
