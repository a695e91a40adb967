"""Turn finished task records into the final store: compact, index, metadata, statistics, manifest.

Kept cubes get dense ids in candidate order. Their chunks move from the staging arrays (one
chunk per candidate) into the final arrays by renaming files, so nothing is read or
rewritten. The index's per-cube georeferencing also goes into the zarr group, for xarray
(:mod:`geoseg.tiling.store_metadata`). Every step can be repeated after a crash: a marker
records that the final arrays exist, moves skip chunks that have already moved, and the
manifest's ``complete`` flag is written last, atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from geoseg.tiling.compact import array_channels, cube_array_name, cube_array_ndim, radiometry
from geoseg.tiling.plan import TilePlan
from geoseg.tiling.series import SERIES_INDEX_LISTS, series_columns
from geoseg.tiling.split import assign_splits
from geoseg.tiling.stats import Moments
from geoseg.tiling.store import (
    ARRAYS_NAME,
    GPKG_NAME,
    INDEX_NAME,
    MANIFEST_NAME,
    SPLITS,
    STATS_NAME,
    chunk_inventory,
    chunk_path,
    create_arrays,
    read_store_json,
)
from geoseg.tiling.store_metadata import describe_arrays
from geoseg.utils.atomic import atomic_path, write_json_atomic

__all__ = ["Outcome", "collect", "finalize"]


@dataclass
class Outcome:
    """Per-candidate results gathered from all task records."""

    fractions: np.ndarray  # valid fraction per candidate
    kept: np.ndarray  # bool per candidate
    moments: dict[int, Moments]
    class_counts: dict[int, list[int]]
    date_fractions: dict[int, list[float]] = field(default_factory=dict)  # a series' valid fraction per date

    @property
    def skipped(self) -> dict[str, int]:
        """Candidates left out, by reason: no valid pixel or below ``min_valid``."""
        empty = int(((~self.kept) & (self.fractions == 0)).sum())
        return {"no valid pixel": empty, "below min-valid": int((~self.kept).sum()) - empty}


def collect(plan: TilePlan, records: list[dict]) -> Outcome:
    """Gather the per-candidate results of all task records into an :class:`Outcome`."""
    n = len(plan.windows)
    fractions = np.zeros(n, np.float64)
    kept = np.zeros(n, bool)
    moments: dict[int, Moments] = {}
    counts: dict[int, list[int]] = {}
    dates: dict[int, list[float]] = {}
    for record in records:
        for e in record["cubes"]:
            i = e["candidate"]
            fractions[i], kept[i] = e["valid_fraction"], e["kept"]
            if e["kept"]:
                moments[i] = Moments.from_json(e["moments"])
                if "class_counts" in e:
                    counts[i] = e["class_counts"]
                if "date_valid_fractions" in e:
                    dates[i] = e["date_valid_fractions"]
    return Outcome(fractions, kept, moments, counts, dates)


def _compact(plan: TilePlan, kept_ids: np.ndarray) -> None:
    final = plan.out / ARRAYS_NAME
    marker = plan.staging / "compaction.json"
    if not marker.exists():
        create_arrays(final, len(kept_ids), array_channels(plan.manifest), plan.params.cube_size, plan.has_labels,
                      manifest=plan.manifest)
        write_json_atomic(marker, {"num_cubes": int(len(kept_ids))}, fsync=True)
    names = [(cube_array_name(plan.manifest), cube_array_ndim(plan.manifest))] + (
        [("labels", 3)] if plan.has_labels else [])
    for dense, candidate in enumerate(kept_ids):
        for name, ndim in names:
            src = chunk_path(plan.staging_arrays, name, int(candidate), ndim)
            if src.exists():  # absent: moved already, or never written (all fill value)
                _move(src, chunk_path(final, name, dense, ndim))


def _move(src, dst) -> None:
    os.replace(src, dst)


def _index(plan: TilePlan, outcome: Outcome, kept_ids: np.ndarray, splits: list[str]):
    import geopandas as gpd
    from shapely.geometry import box

    rows, crs_of = [], {}
    for dense, candidate in enumerate(kept_ids):
        win = plan.windows[candidate]
        grid = plan.scenes[win.scene].scene.grid
        if win.scene not in crs_of:
            epsg = grid.crs.to_epsg()
            crs_of[win.scene] = f"EPSG:{epsg}" if epsg else grid.crs_wkt
        row = {
            "cube_id": dense,
            "scene_id": plan.scenes[win.scene].scene.scene_id,
            "row_off": win.row_off, "col_off": win.col_off, "height": win.height, "width": win.width,
            "crs": crs_of[win.scene],
            "transform": [float(v) for v in tuple(grid.window_transform(win.window))[:6]],
            "valid_fraction": float(outcome.fractions[candidate]),
            "block_row": win.block_row, "block_col": win.block_col,
            "shift_row": win.shift_row, "shift_col": win.shift_col, "padded": win.padded,
            "split": splits[dense],
            "geometry": box(*grid.window_bounds(win.window)),
        }
        series = plan.scenes[win.scene].series
        if series is not None:  # its dates (None = padding) and their valid fractions
            row.update(series_columns(series, outcome.date_fractions[int(candidate)]))
        if plan.params.store == "compact":  # reflectance = (DN + offset) / scale of the cube's scene
            row["dn_offset"], row["dn_scale"] = radiometry(plan.scenes[win.scene].scene)
        if plan.has_labels:
            counts = outcome.class_counts.get(int(candidate), [0] * len(plan.dataset.classes))
            for cls, count in zip(plan.dataset.classes, counts, strict=True):
                row[f"count_{cls.code}"] = int(count)
        rows.append(row)
    crss = sorted(set(crs_of.values()))
    if len(crss) == 1:
        return gpd.GeoDataFrame(rows, geometry="geometry", crs=crss[0])
    # Several CRSs: footprints in EPSG:4326 (one layer for QGIS); native CRS in `crs`.
    parts = []
    for crs in crss:
        part = gpd.GeoDataFrame([r for r in rows if r["crs"] == crs], geometry="geometry", crs=crs)
        part["geometry"] = part.geometry.segmentize(plan.params.cube_size).to_crs("EPSG:4326")
        parts.append(part.set_crs("EPSG:4326", allow_override=True))
    import pandas as pd

    merged = pd.concat(parts).sort_values("cube_id").reset_index(drop=True)
    return gpd.GeoDataFrame(merged, geometry="geometry", crs="EPSG:4326")


def _stats(plan: TilePlan, outcome: Outcome, kept_ids: np.ndarray, splits: list[str]) -> dict:
    channels = plan.recipe.num_channels
    total = Moments.empty(channels)
    per_split: dict[str, Moments] = {s: Moments.empty(channels) for s in SPLITS}
    for dense, candidate in enumerate(kept_ids):
        m = outcome.moments[int(candidate)]
        total = total.merge(m)
        per_split[splits[dense]] = per_split[splits[dense]].merge(m)
    classes = plan.dataset.classes
    class_counts = np.zeros(len(classes), np.int64)
    for candidate in kept_ids:
        if int(candidate) in outcome.class_counts:
            class_counts += np.asarray(outcome.class_counts[int(candidate)], np.int64)

    def block(m: Moments) -> dict:
        return {"mean": m.mean.tolist(), "std": m.std.tolist(), "count": int(m.count)}

    return {
        "channel_names": list(plan.recipe.channel_names),
        **block(total),
        "by_split": {s: block(per_split[s]) for s in SPLITS},
        "class_counts": {str(c.code): int(n) for c, n in zip(classes, class_counts, strict=True)},
        "note": f"population mean/std over valid {'(date, pixel)s' if plan.dataset.is_series else 'pixels'} of all "
                "cubes (overlaps counted per cube); by_split gives the same per split (use train for normalisation "
                "without leakage)",
    }


def finalize(plan: TilePlan, records: list[dict]) -> tuple[Outcome, dict]:
    """Write arrays, index, GeoPackage, statistics and the complete manifest.

    Returns:
        ``(outcome, stats)``. The caller checks there is at least one kept cube first.
    """
    outcome = collect(plan, records)
    kept_ids = np.flatnonzero(outcome.kept)
    blocks = [(plan.windows[i].scene, plan.windows[i].block_row, plan.windows[i].block_col) for i in kept_ids]
    assignment = assign_splits(blocks, plan.params.split, plan.params.seed)
    splits = [assignment[b] for b in blocks]
    _compact(plan, kept_ids)
    index = _index(plan, outcome, kept_ids, splits)
    with atomic_path(plan.out / INDEX_NAME) as tmp:
        index.to_parquet(tmp, index=False)
    gpkg = index.copy()
    for column in ("transform", *(SERIES_INDEX_LISTS if plan.dataset.is_series else ())):  # lists as JSON text
        gpkg[column] = [json.dumps(list(v)) for v in gpkg[column]]
    with atomic_path(plan.out / GPKG_NAME) as tmp:
        gpkg.to_file(tmp, driver="GPKG", layer="cubes")
    describe_arrays(plan.out / ARRAYS_NAME, plan.manifest, index)
    stats = _stats(plan, outcome, kept_ids, splits)
    write_json_atomic(plan.out / STATS_NAME, stats, fsync=True)
    manifest = {
        **plan.manifest,
        "num_cubes": int(len(kept_ids)),
        "skipped": outcome.skipped,
        "splits": {s: int(sum(1 for x in splits if x == s)) for s in SPLITS},
        "edge": {"shifted": int(sum(1 for i in kept_ids if plan.windows[i].shift_row or plan.windows[i].shift_col)),
                 "padded": int(sum(1 for i in kept_ids if plan.windows[i].padded))},
        "index_crs": index.crs.to_string() if index.crs else None,
        # what CubeStore.open verifies (a stat per chunk): a missing or cut chunk is refused
        "chunks": chunk_inventory(plan.out / ARRAYS_NAME, len(kept_ids), plan.has_labels),
        "complete": False,
    }
    write_json_atomic(plan.out / MANIFEST_NAME, manifest, fsync=True)
    manifest["complete"] = True
    write_json_atomic(plan.out / MANIFEST_NAME, manifest, fsync=True)
    return outcome, stats


def read_manifest(path) -> dict | None:
    """The manifest of the store at ``path`` (None without one); a damaged one is a ``CorruptStoreError``."""
    file = path / MANIFEST_NAME
    return read_store_json(file) if file.exists() else None
