"""Plan a tiling run: scenes, checked labels, candidate windows, tasks and the manifest draft.

Everything here is cheap (headers, label checks, window arithmetic): no feature is computed.
The plan fixes the candidate numbering (scene order, then row-major windows), which makes the
final store independent of how many workers run it and in which order tasks finish. A
time-series dataset's scenes are locations with ``T`` dates on one grid (:mod:`geoseg.tiling.series`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from rasterio.windows import Window

from geoseg import __version__
from geoseg.config.catalog import Catalog, Dataset, load_catalog
from geoseg.config.scenes import CatalogScene, dataset_scenes
from geoseg.errors import ConfigError, LabelError
from geoseg.features.recipes import Recipe, get_recipe
from geoseg.io.fingerprint import file_fingerprint
from geoseg.io.labels import LabelMap, SceneLabels, prepare_labels
from geoseg.io.sensors import REFLECTANCE_SCALE
from geoseg.tiling.compact import form_manifest, native_layout, store_form
from geoseg.tiling.compact_native import plan_native_layout
from geoseg.tiling.layout import CubeWindow, cube_windows
from geoseg.tiling.options import TilingParams
from geoseg.tiling.series import series_manifest
from geoseg.tiling.store import STAGING_NAME, STORE_FORMAT
from geoseg.tiling.worker import TileTask

__all__ = ["TilePlan", "make_plan"]


@dataclass
class TilePlan:
    """A planned run: what to read, where to write, and the manifest describing it."""

    dataset_name: str
    dataset: Dataset
    scenes: list[CatalogScene]
    recipe: Recipe
    params: TilingParams
    windows: list[CubeWindow]
    labels: list[SceneLabels | None]
    has_labels: bool
    out: Path
    manifest: dict = field(default_factory=dict)

    def input_files(self) -> list[str]:
        """The catalog, scene files, masks and label files this plan reads."""
        files = [self.manifest.get("catalog")]
        for cs in self.scenes:
            for scene in cs.date_scenes:
                files += scene.files()
            if cs.labels is not None:
                files.append(str(cs.labels.file))
        return [f for f in files if f]

    @property
    def staging(self) -> Path:
        """The staging folder of a running tile job."""
        return self.out / STAGING_NAME

    @property
    def staging_arrays(self) -> Path:
        """The staging Zarr store of the candidate cubes."""
        return self.staging / "candidates.zarr"

    @property
    def records(self) -> Path:
        """The folder of the finished tasks' records."""
        return self.staging / "done"

    @property
    def scene_pixels(self) -> int:
        """Pixels of every scene read (each date of a series)."""
        return sum(s.scene.grid.width * s.scene.grid.height * len(s.date_scenes) for s in self.scenes)

    def tasks(self) -> list[TileTask]:
        """Runs of up to ``params.group`` neighbouring cubes of one cube row, in candidate order."""
        recipe_json = json.dumps(self.recipe.to_dict())  # key order = channel order
        runs: list[list[tuple[int, CubeWindow]]] = []
        # a series task holds T dates of its window: T times fewer cubes per task keep its memory
        group = max(1, self.params.group // (self.dataset.time_steps or 1))
        for candidate, win in enumerate(self.windows):
            last = runs[-1][-1][1] if runs else None
            if (last is None or last.scene != win.scene or last.row_off != win.row_off
                    or len(runs[-1]) >= group):
                runs.append([])
            runs[-1].append((candidate, win))
        unions = [_union(run) for run in runs]
        labels_of: list[SceneLabels | None] = [None] * len(runs)
        for scene_index, labels in enumerate(self.labels):  # one spatial index per scene
            if labels is None:
                continue
            mine = [i for i, run in enumerate(runs) if run[0][1].scene == scene_index]
            grid = self.scenes[scene_index].scene.grid
            for i, sub in zip(mine, labels.subsets([grid.window_bounds(unions[i]) for i in mine]), strict=True):
                labels_of[i] = sub
        tasks = []
        for task_id, run in enumerate(runs):
            series = self.scenes[run[0][1].scene].series
            tasks.append(TileTask(
                task_id=task_id, scene=self.scenes[run[0][1].scene].scene, labels=labels_of[task_id],
                has_labels=self.has_labels, recipe=recipe_json, num_classes=len(self.dataset.classes),
                cubes=tuple(run), cube_size=self.params.cube_size, min_valid=self.params.min_valid,
                staging=str(self.staging_arrays), records=str(self.records), form=self.params.store,
                layout=native_layout(self.manifest), series=series.scenes if series is not None else None,
            ))
        return tasks


def _union(run: list[tuple[int, CubeWindow]]) -> Window:
    first, last = run[0][1], run[-1][1]
    return Window(first.col_off, first.row_off, last.col_off + last.width - first.col_off, first.height)


# keys of a manifest's per-scene source that describe the scene but do not decide the store's content
SOURCE_INFO_KEYS = ("level", "offset_rule", "offset_detail")


def _series_sources(cs: CatalogScene) -> list[dict]:
    """One source per date of a series (its files and radiometry), tagged with the location."""
    assert cs.series is not None
    return [{**_scene_sources(CatalogScene(cs.entry, d.scene, cs.labels)), "location": cs.entry.id,
             "acquired": d.acquired} for d in cs.series.dates if d.scene is not None]


def _scene_sources(cs: CatalogScene) -> dict:
    scene = cs.scene
    files = sorted({b.path for b in scene.bands.values()} | {x.path for x in (scene.scl, scene.mask) if x})
    source = {
        "scene_id": scene.scene_id,
        "path": scene.path,
        "offset": scene.offset.offset,
        "invalid_scl": list(scene.invalid_scl),
        "grid": {"crs": scene.grid.crs_wkt, "transform": list(scene.grid.transform),
                 "width": scene.grid.width, "height": scene.grid.height},
        "files": [file_fingerprint(f) for f in files],
        "labels": None,
    }
    if scene.scale != REFLECTANCE_SCALE:  # recorded only when stated, so older stores still resume
        source["scale"] = scene.scale
    # information for people and the model bundle's training domain, never compared when resuming
    source.update(level=scene.level, offset_rule=scene.offset.source, offset_detail=scene.offset.detail)
    if cs.labels is not None:
        source["labels"] = {**file_fingerprint(cs.labels.file), "column": cs.labels.column, "layer": cs.labels.layer}
    return source


def make_plan(catalog: str | Path | Catalog, dataset: str, out: str | Path, params: TilingParams) -> TilePlan:
    """Open the dataset's scenes, check their labels and lay out the candidate windows.

    Raises:
        CatalogError: unknown dataset or missing data. BandError: the recipe needs absent
        bands. LabelError / CRSMismatchError: labels that do not fit the class map or scene.
    """
    cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    ds = cat.dataset(dataset)
    if ds.is_series and params.store != "features":
        raise ConfigError(f"--store {params.store} does not hold time series yet: dataset {dataset!r} has "
                          f"time_steps {ds.time_steps}", hint="tile it with --store features (the default)")
    scenes = dataset_scenes(cat, dataset)
    recipe = get_recipe(ds.recipe)
    for cs in scenes:
        for scene in cs.date_scenes:
            scene.require_bands(recipe.required_bands, f"recipe {recipe.name}")
    label_map = LabelMap(tuple(c.code for c in ds.classes), tuple(ds.ignore_codes), tuple(c.name for c in ds.classes))
    labels: list[SceneLabels | None] = []
    for cs in scenes:
        if cs.labels is None:
            labels.append(None)
            continue
        if not ds.classes:
            raise LabelError(f"dataset {dataset!r} has labels but no classes", path=cat.source,
                             hint="list the classes (code, name, color) of the dataset in the catalog")
        labels.append(prepare_labels(cs.labels.raster, cs.labels.vector, cs.scene.grid, label_map,
                                     column=cs.labels.column, layer=cs.labels.layer))
    windows = [
        w
        for i, cs in enumerate(scenes)
        for w in cube_windows(i, cs.scene.grid.height, cs.scene.grid.width, params.cube_size, params.overlap,
                              params.split_block)
    ]
    has_labels = any(lab is not None for lab in labels)
    plan = TilePlan(dataset, ds, scenes, recipe, params, windows, labels, has_labels, Path(out))
    plan.manifest = {
        "format": STORE_FORMAT,
        "geoseg_version": __version__,
        "dataset": dataset,
        "catalog": str(cat.source) if cat.source else None,
        "recipe": recipe.to_dict(),
        "channel_names": list(recipe.channel_names),
        "mask_channels": recipe.num_mask_channels,
        "classes": [{"index": i, "code": c.code, "name": c.name, "color": c.color} for i, c in enumerate(ds.classes)],
        "ignore_codes": list(ds.ignore_codes),
        "ignore_index": 255,
        "has_labels": has_labels,
        "cube_size": params.cube_size,
        "overlap": params.overlap,
        "stride": params.stride,
        "min_valid": params.min_valid,
        "split": {"fractions": dict(zip(("train", "val", "test"), params.split, strict=True)),
                  "seed": params.seed, "block": params.split_block},
        "sources": ([s for cs in scenes for s in _series_sources(cs)] if ds.is_series
                    else [_scene_sources(cs) for cs in scenes]),
        "num_candidates": len(windows),
        **form_manifest(params.store, recipe, plan_native_layout([cs.scene for cs in scenes], recipe, params.cube_size)
                        if params.store == "compact" else None),
        **(series_manifest(ds.time_steps, ds.series_rule, [cs.series for cs in scenes if cs.series is not None])
           if ds.time_steps else {}),
        "complete": False,
    }
    return plan


def content_key(manifest: dict) -> dict:
    """The parts of a manifest that decide the store's content (compared when resuming)."""
    keys = ("format", "dataset", "recipe", "classes", "ignore_codes", "cube_size", "overlap", "min_valid",
            "split", "sources", "num_candidates", "time_steps", "series")
    key = {k: manifest.get(k) for k in keys}
    key["form"] = store_form(manifest)  # stores written before the option hold features
    if isinstance(key["sources"], list):  # a store written before a source recorded them resumes alike
        key["sources"] = [{k: v for k, v in s.items() if k not in SOURCE_INFO_KEYS} if isinstance(s, dict) else s
                          for s in key["sources"]]
    return key


def describe_difference(old: dict, new: dict) -> str:
    """Name what changed between two manifests (for the refusal message)."""
    a, b = content_key(old), content_key(new)
    changed = [k for k in a if a[k] != b[k]]
    if "sources" in changed and len(a["sources"] or []) == len(b["sources"] or []):
        for s_old, s_new in zip(a["sources"], b["sources"], strict=True):
            if s_old != s_new:
                what = [k for k in s_old if s_old.get(k) != s_new.get(k)]
                return f"source of scene {s_new['scene_id']!r} changed ({', '.join(what)})"
    return "parameters changed: " + ", ".join(f"{k} {a[k]!r} -> {b[k]!r}" if k not in ("sources", "series") else k
                                              for k in changed)


def remove_tree(path: Path) -> None:
    import shutil

    if path.exists():
        shutil.rmtree(path)


def is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(os.scandir(path))
