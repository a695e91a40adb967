"""Typed configuration: the data catalog (``data_catalog.yaml``) and its scenes.

>>> catalog = load_catalog("data_catalog.yaml")
>>> scenes = dataset_scenes(catalog, "demo")       # [CatalogScene]: opened scene + its labels

The YAML schema machinery (``schema``) and the
catalog's entry models (``catalog``) are importable from their modules.
"""

from geoseg.config.catalog import Catalog, ClassDef, Dataset, load_catalog
from geoseg.config.scenes import CatalogScene, dataset_scenes

__all__ = [
    "Catalog",
    "CatalogScene",
    "ClassDef",
    "Dataset",
    "dataset_scenes",
    "load_catalog",
]
