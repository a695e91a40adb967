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
from typing import Any

from geoseg.config.catalog import Catalog
from geoseg.config.schema import with_overrides
from geoseg.errors import ConfigError, CorruptStoreError, EmptyAreaError, GeosegError
from geoseg.tiling.compact import array_channels
from geoseg.tiling.finalize import finalize, read_manifest
from geoseg.tiling.options import TileOptions
from geoseg.tiling.plan import (
    TilePlan,
    content_key,
    describe_difference,
    make_plan,
    remove_tree,
)
from geoseg.tiling.store import (
    LEGACY_STORE,
    MANIFEST_NAME,
    STORE_ENTRIES,
    STORE_KIND,
    create_arrays,
    verify_store,
)
from geoseg.tiling.worker import TileTask, load_record, record_path, run_task
from geoseg.utils.atomic import write_json_atomic
from geoseg.utils.memory import malloc_environ
from geoseg.utils.outputs import (
    check_not_input,
    claim_folder,
    clean_stale_temporaries,
    mark_folder,
    remove_owned,
)
from geoseg.utils.progress import track_progress

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
        """The report of ``geoseg tile``, one string per line."""
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
    with dask.config.set(config), contextlib.ExitStack() as stack:
        with sigint_to_this_process_only():  # Ctrl-C: this process stops the workers, which print nothing
            cluster = stack.enter_context(LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL
            ))
            c = stack.enter_context(Client(cluster))
        yield c


@contextlib.contextmanager
def sigint_to_this_process_only() -> Iterator[None]:
    """Start child processes inside this block with SIGINT blocked; Ctrl-C then reaches only this process.

    A terminal sends Ctrl-C to the whole foreground process group: without this, every Dask
    worker process prints its own KeyboardInterrupt traceback. Children inherit the blocked
    signal across exec; this process records an interrupt arriving meanwhile and raises
    KeyboardInterrupt when the block ends (its caller then shuts the workers down).
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()  # started later, it would unblock SIGINT in the thread that spawns workers
    interrupted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a pending Ctrl-C is recorded now
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        raise KeyboardInterrupt


def _prepare_store(plan: TilePlan, overwrite: bool) -> dict | None:
    """Create, resume or refuse the output directory; returns the existing complete manifest if any.

    Only what geoseg wrote is ever removed (:mod:`geoseg.utils.outputs`): a user's file in the
    folder survives ``overwrite``.
    """
    out = plan.out
    claim_folder(out, STORE_KIND, legacy=LEGACY_STORE)
    old = read_manifest(out) if out.exists() else None
    if old is not None and content_key(old) != content_key(plan.manifest):
        if not overwrite:
            raise ConfigError(f"existing CubeStore was built differently: {describe_difference(old, plan.manifest)}",
                              path=out, hint="add --overwrite to rebuild it, or choose another --out")
        log.info("rebuilding %s: %s", out, describe_difference(old, plan.manifest))
        remove_owned(out, STORE_KIND, legacy=LEGACY_STORE)
        old = None
    if old is not None and old.get("complete"):
        try:  # a complete store whose chunks were lost or cut is rebuilt, never reported as complete
            verify_store(out, old)
        except CorruptStoreError as err:  # its hint: restore the file, or --overwrite
            if not overwrite or err.path == str(out / MANIFEST_NAME):
                raise
            log.info("rebuilding damaged %s: %s", out, err)
            remove_owned(out, STORE_KIND, legacy=LEGACY_STORE)
            old = None
    if old is not None and old.get("complete"):
        remove_tree(plan.staging)  # a crash after completion may leave it behind
        return old
    if old is None or not plan.staging_arrays.exists():
        remove_tree(plan.staging)
        out.mkdir(parents=True, exist_ok=True)
        mark_folder(out, STORE_KIND, STORE_ENTRIES)  # before the first byte of the store
        plan.records.mkdir(parents=True)
        create_arrays(plan.staging_arrays, len(plan.windows), array_channels(plan.manifest), plan.params.cube_size,
                      plan.has_labels, manifest=plan.manifest)
    write_json_atomic(out / MANIFEST_NAME, plan.manifest, fsync=True)  # complete: false
    return None


def _run(tasks: list[TileTask], client, progress: bool) -> list[dict]:
    from distributed import as_completed

    if not tasks:
        return []
    run = uuid.uuid4().hex[:12]
    futures = client.map(run_task, tasks, pure=False, key=[f"geoseg-tile-{run}-{t.task_id}" for t in tasks])
    records = []
    with track_progress(sum(len(t.cubes) for t in tasks), "tiling", "cube", enabled=progress) as bar:
        try:
            for future in as_completed(futures):
                record = future.result()
                if "error" in record:  # a user error (a damaged scene file...) found by a worker: one line
                    raise record["error"]
                records.append(record)
                bar.update(len(record["cubes"]))
        except BaseException:
            client.cancel(futures)
            raise
    return records


def tile_dataset(
    catalog: str | Path | Catalog,
    dataset: str,
    out: str | Path,
    options: TileOptions | None = None,
    *,
    client: Any = None,
    **overrides: Any,
) -> TileSummary:
    """Cut every scene of ``dataset`` into masked feature cubes and write the CubeStore ``out``.

    Args:
        catalog: path of ``data_catalog.yaml`` or a loaded :class:`~geoseg.config.Catalog`.
        dataset: dataset name in the catalog.
        out: store directory (created; an interrupted run with the same inputs is resumed).
        options: the run's :class:`~geoseg.tiling.TileOptions` (cube size, overlap, split,
            workers...); default: ``TileOptions()``.
        client: an existing ``distributed.Client`` to use (wins over ``workers``/``scheduler``).
        **overrides: single options instead of (or on top of) ``options``, e.g.
            ``tile_dataset(cat, "demo", "cubes", cube_size=128)``.

    Raises:
        CatalogError, BandError, LabelError, CRSMismatchError, ConfigError (options, or an
        existing store built differently without ``overwrite``), EmptyAreaError (no cube
        reaches ``min_valid``; nothing is left behind).
    """
    start = time.perf_counter()
    opts = with_overrides(options or TileOptions(), overrides)
    params = opts.params()
    workers, scheduler, min_valid = opts.workers, opts.scheduler, opts.min_valid
    claim_folder(out, STORE_KIND, legacy=LEGACY_STORE)  # before any work
    plan = make_plan(catalog, dataset, out, params)
    check_not_input({"--out": out}, plan.input_files())
    classes = plan.dataset.classes
    existing = _prepare_store(plan, opts.overwrite)
    common: dict[str, Any] = {"store": plan.out, "dataset": dataset, "scenes": len(plan.scenes), "candidates": len(plan.windows),
              "class_names": {c.code: c.name for c in classes}, "workers": None if scheduler or client else
              (workers or os.cpu_count()), "scheduler": scheduler}
    if existing is not None:
        return TileSummary(**common, cubes=existing["num_cubes"], skipped=existing.get("skipped", {}),
                           class_counts={}, computed=0, resumed=0, seconds=time.perf_counter() - start,
                           scene_megapixels=plan.scene_pixels / 1e6, splits=existing.get("splits", {}),
                           already_complete=True)
    tasks = plan.tasks()
    clean_stale_temporaries(record_path(plan.records, 0), every_output=True)  # a killed run's half-written records
    done = {t.task_id: load_record(t) for t in tasks}
    pending = [t for t in tasks if done[t.task_id] is None]
    resumed = sum(len(t.cubes) for t in tasks if done[t.task_id] is not None)
    if resumed:
        log.info("resuming %s: %d of %d cubes already done", plan.out, resumed, len(plan.windows))
    tiling_seconds = 0.0
    try:
        with _quiet_distributed(), _client(workers, scheduler, client) as c:
            t0 = time.perf_counter()
            for record in _run(pending, c, opts.progress):
                done[record["task"]] = record
            tiling_seconds = time.perf_counter() - t0
    except GeosegError:
        if not resumed:  # e.g. a scene file damaged mid-run: leave no half-written store behind
            remove_owned(plan.out, STORE_KIND)
        raise
    records: list[dict] = [r for r in (done[t.task_id] for t in tasks) if r is not None]
    if len(records) != len(tasks):  # cannot happen: every pending task ran or raised
        raise RuntimeError(f"{len(tasks) - len(records)} tiling task(s) returned no record")
    if not any(e["kept"] for r in records for e in r["cubes"]):
        remove_owned(plan.out, STORE_KIND)
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
