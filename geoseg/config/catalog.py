"""``data_catalog.yaml``: datasets of scenes, labels and class maps, as typed models."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from geoseg.config.schema import StrictModel, load_yaml
from geoseg.errors import CatalogError
from geoseg.io.raster import is_virtual
from geoseg.io.sensors import DEFAULT_INVALID_SCL
from geoseg.utils.closest import did_you_mean

__all__ = ["ClassDef", "LabelSource", "SceneEntry", "DemoSource", "Dataset", "Catalog", "load_catalog", "cache_dir"]

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def cache_dir() -> Path:
    """Where generated data (the demo scene) lives: ``$GEOSEG_CACHE`` or ``~/.cache/geoseg``."""
    return Path(os.environ.get("GEOSEG_CACHE", Path.home() / ".cache" / "geoseg"))


class ClassDef(StrictModel):
    """One land-cover class: the code written in rasters, a name and a display colour."""

    code: int = Field(ge=1, le=254, description="pixel value in label and output rasters (0 = nodata)")
    name: str = Field(min_length=1)
    color: str = Field(description="#RRGGBB")

    @field_validator("color")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _HEX.match(value):
            raise ValueError(f"colour {value!r} is not #RRGGBB")
        return value.lower()

    @property
    def rgb(self) -> tuple[int, int, int]:
        return tuple(int(self.color[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


class LabelSource(StrictModel):
    """Labels for a scene: a raster of class codes, or a vector file to rasterise."""

    raster: Path | str | None = Field(None, description="label raster: local path, URL or /vsi path")
    vector: Path | str | None = Field(None, description="label vectors (GeoPackage, Shapefile...): local path, URL "
                                      "or /vsi path")
    column: str | None = Field(None, description="vector attribute holding the class code (or class name)")
    layer: str | None = None

    @field_validator("raster", "vector", mode="before")
    @classmethod
    def _location(cls, value):
        """A URL or GDAL ``/vsi`` path stays the string as written (``Path`` folds ``s3://`` to ``s3:/``)."""
        return Path(value) if isinstance(value, str) and not is_virtual(value) else value

    @model_validator(mode="after")
    def _one_source(self) -> LabelSource:
        if (self.raster is None) == (self.vector is None):
            raise ValueError("give exactly one of 'raster' or 'vector'")
        if self.vector is not None and not self.column:
            raise ValueError("vector labels need 'column' (the attribute with class codes)")
        return self

    @property
    def file(self) -> Path | str:
        """The label file: ``raster`` or ``vector`` (validation ensures exactly one is set)."""
        path = self.raster or self.vector
        assert path is not None
        return path


class DemoSource(StrictModel):
    """A generated demo scene (no download needed)."""

    size: int = Field(1024, ge=64, le=10980)
    seed: int = 0

    def directory(self) -> Path:
        return cache_dir() / f"demo_{self.size}_{self.seed}"


class SceneEntry(StrictModel):
    """One scene of a dataset: a file, folder or URL, a STAC item, or the generated demo scene."""

    id: str
    path: Path | str | None = Field(None, description="multi-band GeoTIFF, per-band folder, .SAFE(.zip) or URL")
    stac: str | None = Field(None, description="STAC item (JSON file or URL) whose assets are the scene's bands")
    demo: DemoSource | None = Field(None, description="generate the built-in demo scene instead")
    labels: LabelSource | None = None
    offset: float | None = Field(None, description="DN offset override, e.g. -1000")
    scale: float | None = Field(None, gt=0, allow_inf_nan=False,
                                description="DN per unit reflectance: 10000 (default, Sentinel-2 DN), 1 for reflectance 0-1")
    date: str | None = Field(None, validation_alias=AliasChoices("date", "datetime"),
                             description="acquisition to read from a folder of several: YYYYMMDD[THHMMSS] or ISO "
                                         "8601 (key datetime:, or date:)")
    band_names: list[str] | None = None
    mask: Path | str | None = Field(None, description="external mask raster: non-zero = invalid")

    @field_validator("path", "mask", mode="before")
    @classmethod
    def _location(cls, value):
        """A URL or GDAL ``/vsi`` path stays the string as written (``Path`` folds ``s3://`` to ``s3:/``)."""
        return Path(value) if isinstance(value, str) and not is_virtual(value) else value

    @field_validator("date", mode="before")
    @classmethod
    def _date_text(cls, value):
        """YAML reads ``date: 2017-02-16`` as a date and ``date: 20170216`` as a number: take them as text."""
        import datetime as _dt

        if isinstance(value, _dt.datetime):
            return value.strftime("%Y%m%dT%H%M%S")
        if isinstance(value, _dt.date):
            return value.strftime("%Y%m%d")
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _one_path(self) -> SceneEntry:
        given = [key for key in ("path", "stac", "demo") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f"scene {self.id!r}: give exactly one of 'path', 'stac' or 'demo'"
                             + (f" (found {' and '.join(given)})" if given else ""))
        return self


class Dataset(StrictModel):
    """A named dataset of the catalog: its scenes, classes and feature recipe."""

    description: str = ""
    requires: Path | None = Field(None, description="folder that must exist (e.g. ../shared/data)")
    recipe: str = "s2_24"
    invalid_scl: list[int] = Field(default_factory=lambda: list(DEFAULT_INVALID_SCL))
    ignore_codes: list[int] = Field(default_factory=lambda: [0], description="label codes = unlabelled")
    classes: list[ClassDef] = Field(default_factory=list)
    scenes: list[SceneEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Dataset:
        codes = [c.code for c in self.classes]
        if len(set(codes)) != len(codes):
            raise ValueError(f"duplicate class codes in {codes}")
        ids = [s.id for s in self.scenes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate scene ids in {ids}")
        return self

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]


class Catalog(StrictModel):
    """The data catalog (``data_catalog.yaml``): datasets by name."""

    schema_version: Literal[1] = 1
    datasets: dict[str, Dataset]
    source: Path | None = Field(None, exclude=True, description="the file this was read from")

    def dataset(self, name: str) -> Dataset:
        if name not in self.datasets:
            raise CatalogError(f"no dataset {name!r}", path=self.source, hint=did_you_mean(name, self.datasets))
        return self.datasets[name]

    def resolve(self, path: Path) -> Path:
        """A catalog path, relative to the catalog file's folder."""
        path = Path(os.path.expanduser(str(path)))
        if path.is_absolute() or self.source is None:
            return path
        return (self.source.parent / path).resolve()

    def locate(self, location: str | Path) -> str | Path:
        """A scene location of the catalog: a URL or ``/vsi`` path as written, else :meth:`resolve`."""
        return location if isinstance(location, str) and is_virtual(location) else self.resolve(Path(location))

    def check_available(self, name: str) -> None:
        ds = self.dataset(name)
        if ds.requires is not None and not self.resolve(ds.requires).exists():
            raise CatalogError(
                f"dataset {name!r} needs {ds.requires}, which is not there",
                path=self.source,
                hint="place the shared data folder beside the repository",
            )


def load_catalog(path: str | Path = "data_catalog.yaml") -> Catalog:
    """Load and validate a catalog; unknown keys fail with the file, key and closest valid key."""
    try:
        catalog = load_yaml(path, Catalog)
    except CatalogError:
        raise
    except Exception as err:  # ConfigError from the loader → CatalogError for the catalog
        from geoseg.errors import ConfigError

        if isinstance(err, ConfigError):
            raise CatalogError(str(err)) from None
        raise
    catalog.source = Path(path).resolve()
    return catalog
