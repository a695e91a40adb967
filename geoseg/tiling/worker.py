"""What one Dask task does: read a run of neighbouring cubes once, cut, mask, write, summarise.

A task covers up to ``group`` cubes of one cube row of one scene. It reads their union
window with :func:`~geoseg.features.read_features` (values do not depend on the window, so a
slice of the union equals a read of the cube's own window, bit for bit), cuts the cubes,
pads cubes of scenes smaller than a cube, derives labels, and writes each kept cube into its
own chunk of the staging arrays (chunk = candidate number, so tasks never share a chunk and
need no lock; chunk files are written directly, see :func:`~geoseg.tiling.store.write_chunk`).
It then writes a small JSON *record* (valid fraction, float64 moments, class
counts per cube) atomically: a task with a record is complete, which is what resuming checks.
A time-series task reads the window of every date the same way (:mod:`geoseg.tiling.series`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from geoseg.errors import GeosegError
from geoseg.features.recipes import Recipe
from geoseg.io.labels import IGNORE_INDEX, SceneLabels
from geoseg.io.raster import GDAL_ENV, reading
from geoseg.io.scene import Scene
from geoseg.tiling.compact import dn_cube, read_features_and_dn
from geoseg.tiling.compact_native import RECORD_ARRAY, native_records
from geoseg.tiling.layout import CubeWindow
from geoseg.tiling.series import merged_moments, read_series
from geoseg.tiling.stats import ColumnMoments
from geoseg.tiling.store import write_chunk
from geoseg.utils.atomic import write_json_atomic

__all__ = ["TileTask", "run_task", "record_path", "load_record", "GDAL_WORKER_ENV"]


@dataclass(frozen=True)
class TileTask:
    """Everything a worker needs for one run of cubes (picklable, no open handles)."""

    task_id: int
    scene: Scene
    labels: SceneLabels | None
    has_labels: bool
    recipe: str  # JSON of Recipe.to_dict(): rebuilt (and cached) in the worker
    num_classes: int
    cubes: tuple[tuple[int, CubeWindow], ...]  # (candidate number, window)
    cube_size: int
    min_valid: float
    staging: str  # zarr group of the staging arrays
    records: str  # folder of task records
    form: str = "features"  # what a chunk holds: the recipe's channels, or its DN (geoseg.tiling.compact)
    layout: dict | None = None  # a compact store's native layout (geoseg.tiling.compact_native)
    series: tuple[Scene | None, ...] | None = None  # a time series' T dates (None: a padded date)

    @property
    def union(self) -> Window:
        """The window spanning the task's cubes (one cube row)."""
        windows = [w for _, w in self.cubes]
        col0 = min(w.col_off for w in windows)
        col1 = max(w.col_off + w.width for w in windows)
        return Window(col0, windows[0].row_off, col1 - col0, windows[0].height)


def record_path(records: str | Path, task_id: int) -> Path:
    """The record file of task ``task_id`` in the ``records`` folder."""
    return Path(records) / f"{task_id:07d}.json"


def load_record(task: TileTask) -> dict | None:
    """The record of a finished task, or None (also when it was written for other cubes)."""
    path = record_path(task.records, task.task_id)
    if not path.exists():
        return None
    with open(path) as fh:
        record = json.load(fh)
    if [e["candidate"] for e in record["cubes"]] != [c for c, _ in task.cubes]:
        return None
    return record


@functools.lru_cache(maxsize=8)
def _recipe(text: str) -> Recipe:
    return Recipe.from_dict(json.loads(text))


# GDAL's block cache defaults to 5 % of RAM per process; a fixed cap keeps a worker's memory
# independent of the scene size (a row of cubes re-reads few blocks). GDAL reads the option
# when its cache is first used, i.e. in the worker's first task. rasterio passes an integer
# to GDALSetCacheMax64, i.e. in bytes (a bare 128 would mean 128 bytes: no cache at all, and
# every block shared by neighbouring cubes decompressed again).
# The read options of geoseg.io (GDAL_ENV: HTTP retries, one GDAL thread) are set here for the
# whole task as well as around each read, so a worker reads remote files as the main process does.
GDAL_WORKER_ENV = {**GDAL_ENV, "GDAL_CACHEMAX": 64 * 2**20}


def run_task(task: TileTask) -> dict:
    """Compute, write and record the task's cubes; returns the record.

    A user error (:class:`~geoseg.errors.GeosegError`, e.g. a scene file that cannot be read
    in this task's window) is returned as ``{"task": id, "error": err}`` rather than raised:
    the tiler raises it as one line, and the worker logs no "Compute Failed" traceback.
    """
    try:
        return _run_task(task)
    except GeosegError as err:
        # the GDAL exceptions it replaces do not pickle: send the error alone
        err.__cause__ = err.__context__ = None
        err.__traceback__ = None
        return {"task": task.task_id, "error": err}


def _run_task(task: TileTask) -> dict:
    import rasterio

    from geoseg.features.stack import read_features

    recipe = _recipe(task.recipe)
    union = task.union
    compact = task.form == "compact"
    with rasterio.Env(**GDAL_WORKER_ENV):
        records = None
        if compact and task.layout is not None:  # the channels (for the statistics); the records hold the source DN
            features, valid = read_features(task.scene, union, recipe)
            cubes = [(slice(w.col_off - int(union.col_off), w.col_off - int(union.col_off) + w.width),
                      w.height, w.width) for _, w in task.cubes]
            with reading(task.scene.path, f"the source blocks of window {union}"):
                records = native_records(task.scene, union, cubes, valid, None, recipe, task.layout)
        elif compact:  # the channels and the DN on the 10 m grid they come from (written)
            features, valid, dn = read_features_and_dn(task.scene, union, recipe)
        elif task.series is not None:  # (T, C, h, w) and (T, h, w); a pixel valid on any date keeps its label
            features, date_valid = read_series(task.series, union, recipe)
            valid = np.logical_or.reduce(date_valid, axis=0)
        else:
            features, valid = read_features(task.scene, union, recipe)
        labels = None
        if task.has_labels:
            if task.labels is None:  # a scene without labels in a labelled dataset: all ignore
                labels = np.full(valid.shape, IGNORE_INDEX, dtype=np.uint8)
            else:
                labels = task.labels.read(union, valid)
    size, area = task.cube_size, task.cube_size * task.cube_size
    # per-column moments (per date of a series), merged per cube below
    columns = ([ColumnMoments.of(f, v) for f, v in zip(features, date_valid, strict=True)]
               if task.series is not None else [ColumnMoments.of(features, valid)])
    entries = []
    for k, (candidate, win) in enumerate(task.cubes):
        c0 = win.col_off - int(union.col_off)
        cols = slice(c0, c0 + win.width)
        cube_valid = np.zeros((size, size), dtype=bool)
        cube_valid[: win.height, : win.width] = valid[:, cols]
        fraction = float(cube_valid.sum()) / area
        entry: dict = {"candidate": candidate, "valid_fraction": fraction,
                       "kept": fraction >= task.min_valid and fraction > 0}
        if task.series is not None:
            entry["date_valid_fractions"] = [float(v[:, cols].sum()) / area for v in date_valid]
        if entry["kept"] and records is not None:
            write_chunk(task.staging, RECORD_ARRAY, candidate, records[k])
        elif entry["kept"] and compact:
            write_chunk(task.staging, "dn", candidate, dn_cube(dn, cols, win.height, win.width, size))
        elif entry["kept"]:
            if win.padded:  # (C, size, size), or (T, C, size, size) for a series
                cube = np.zeros((*features.shape[:-2], size, size), dtype=np.float32)
                cube[..., : win.height, : win.width] = features[..., cols]
            else:
                cube = np.ascontiguousarray(features[..., cols])
            write_chunk(task.staging, "cubes", candidate, cube)
        if entry["kept"]:
            entry["moments"] = merged_moments(columns, cols).to_json()
            if labels is not None:
                lab = np.full((size, size), IGNORE_INDEX, dtype=np.uint8)
                lab[: win.height, : win.width] = labels[:, cols]
                write_chunk(task.staging, "labels", candidate, lab)
                counts = np.bincount(lab[lab != IGNORE_INDEX], minlength=task.num_classes)
                entry["class_counts"] = counts[: task.num_classes].tolist()
        entries.append(entry)
    record = {"task": task.task_id, "cubes": entries, "pixels": int(union.width * union.height)}
    write_json_atomic(record_path(task.records, task.task_id), record, fsync=False, clean=False)  # see tiler
    return record
