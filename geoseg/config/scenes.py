"""Turn catalog entries into :class:`~geoseg.io.Scene` objects (generating the demo if needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from geoseg.config.catalog import AcquisitionEntry, Catalog, Dataset, LabelSource, SceneEntry
from geoseg.config.series import SceneSeries, open_series
from geoseg.io.scene import Scene, open_scene
from geoseg.io.stac import load_item

if TYPE_CHECKING:
    from pystac import Item

__all__ = ["CatalogScene", "dataset_scenes", "scene_from_entry"]


@dataclass(frozen=True)
class CatalogScene:
    """A scene of a dataset with its resolved label source (paths absolute).

    A time series (``series`` set) is described by its first chosen date as ``scene``, named
    by the entry's id (its grid is every date's grid); ``series`` holds the ``T`` dates.
    """

    entry: SceneEntry
    scene: Scene
    labels: LabelSource | None
    series: SceneSeries | None = None

    @property
    def date_scenes(self) -> list[Scene]:
        """The scenes it reads: ``scene`` itself, or every (not padded) date of its series."""
        return [self.scene] if self.series is None else [s for s in self.series.scenes if s is not None]


def scene_from_entry(catalog: Catalog, dataset: Dataset, entry: SceneEntry) -> CatalogScene:
    """Resolve a catalog scene entry to its scene file and labels (generating the demo scene if needed)."""
    labels = entry.labels
    if entry.demo is not None and entry.demo.dates > 1:
        entry, labels = _demo_season(entry)
    if entry.demo is not None:
        from geoseg.demo import DemoScene, generate_demo_scene

        root = entry.demo.directory()
        demo = DemoScene(root) if (root / "labels.tif").exists() else generate_demo_scene(
            root, size=entry.demo.size, seed=entry.demo.seed
        )
        path: str | Path | Item = demo.scene
        if labels is None:
            labels = LabelSource(raster=demo.labels)
    elif entry.stac is not None:  # read as a STAC item whatever its href ends with
        path = load_item(catalog.locate(entry.stac))
    elif entry.path is not None:
        path = catalog.locate(entry.path)
    if labels is not None:
        labels = labels.model_copy(update={
            "raster": catalog.locate(labels.raster) if labels.raster else None,
            "vector": catalog.locate(labels.vector) if labels.vector else None,
        })
    if entry.series is not None:
        series = open_series(catalog, dataset, entry)
        return CatalogScene(entry, series.reference.with_options(scene_id=entry.id), labels, series)
    scene = open_scene(
        path,
        offset=entry.offset,
        scale=entry.scale,
        date=entry.date,
        band_names=entry.band_names,
        invalid_scl=dataset.invalid_scl,
        mask=catalog.locate(entry.mask) if entry.mask else None,
        scene_id=entry.id,
    )
    return CatalogScene(entry, scene, labels)


def _demo_season(entry: SceneEntry) -> tuple[SceneEntry, LabelSource | None]:
    """A demo season entry as the series of its generated dates (generated on first use) and its labels."""
    from geoseg.demo import generate_demo_series

    demo = entry.demo
    assert demo is not None
    root = demo.directory()
    if (root / "labels.tif").exists():  # the folder appears whole (atomic_folder): a complete season
        dates = sorted(p for p in root.iterdir() if p.is_dir())
    else:
        dates = list(generate_demo_series(root, size=demo.size, seed=demo.seed, dates=demo.dates).scenes)
    series = [AcquisitionEntry(path=p) for p in dates]  # each date's datetime is in its metadata
    labels = entry.labels or LabelSource(raster=root / "labels.tif")
    return entry.model_copy(update={"demo": None, "series": series}), labels


def dataset_scenes(catalog: Catalog, name: str) -> list[CatalogScene]:
    """Every scene of dataset ``name``; raises CatalogError when its data is not available."""
    catalog.check_available(name)
    dataset = catalog.dataset(name)
    return [scene_from_entry(catalog, dataset, entry) for entry in dataset.scenes]
