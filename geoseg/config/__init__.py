"""Typed configuration: the data catalog and the shared YAML schema machinery."""

from geoseg.config.catalog import (
    Catalog,
    ClassDef,
    Dataset,
    DemoSource,
    LabelSource,
    SceneEntry,
    cache_dir,
    load_catalog,
)
from geoseg.config.closest import closest, did_you_mean
from geoseg.config.scenes import CatalogScene, dataset_scenes, scene_from_entry
from geoseg.config.schema import StrictModel, load_yaml, validate

__all__ = [
    "Catalog",
    "CatalogScene",
    "ClassDef",
    "Dataset",
    "DemoSource",
    "LabelSource",
    "SceneEntry",
    "StrictModel",
    "cache_dir",
    "closest",
    "dataset_scenes",
    "did_you_mean",
    "load_catalog",
    "load_yaml",
    "scene_from_entry",
    "validate",
]
