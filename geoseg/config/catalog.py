"""``data_catalog.yaml``: datasets of scenes, labels and class maps, as typed models."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from geoseg.config.schema import StrictModel, load_yaml
from geoseg.errors import CatalogError
from geoseg.io.options import AcquisitionDate, SCLClasses, scene_option
from geoseg.io.raster import is_virtual
from geoseg.utils.closest import did_you_mean

__all__ = ["ClassDef", "LabelSource", "SceneEntry", "AcquisitionEntry", "DemoSource", "Dataset", "Catalog",
           "load_catalog", "cache_dir"]

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
        """The colour as an (r, g, b) tuple of 0-255 ints."""
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


_MAX_DEMO_DATES = 37  # geoseg.demo.series.MAX_DATES (not imported: the catalog loads without numpy/scipy)


class DemoSource(StrictModel):
    """A generated demo scene, or with ``dates`` > 1 a generated demo season (no download needed)."""

    size: int = Field(1024, ge=64, le=10980)
    seed: int = 0
    dates: int = Field(1, ge=1, le=_MAX_DEMO_DATES, description="acquisitions: > 1 generates a season (a time "
                       "series, geoseg demo-data --dates N) for a dataset with time_steps")

    def directory(self) -> Path:
        """The cache folder the demo scene (or season) is generated into."""
        season = f"_{self.dates}dates" if self.dates > 1 else ""
        return cache_dir() / f"demo_{self.size}_{self.seed}{season}"


class AcquisitionEntry(StrictModel):
    """One date of a scene's time series: a scene location read exactly as a single scene is."""

    path: Path | str | None = Field(None, description="multi-band GeoTIFF, per-band folder, .SAFE(.zip) or URL")
    stac: str | None = Field(None, description="STAC item (JSON file or URL) whose assets are the date's bands")
    # the date's reading options, declared by geoseg.io.SceneOptions (key date: or datetime:)
    offset: float | None = scene_option("offset")
    scale: float | None = scene_option("scale")
    date: AcquisitionDate | None = scene_option("date")
    band_names: list[str] | None = None
    mask: Path | str | None = Field(None, description="external mask raster: non-zero = invalid")
    acquired: AcquisitionDate | None = Field(None, description="acquisition date or datetime (ISO 8601); wins over the scene's "
                                 "metadata, needed when the metadata has none")

    @field_validator("path", "mask", mode="before")
    @classmethod
    def _location(cls, value):
        return SceneEntry._location(value)

    @model_validator(mode="after")
    def _one_path(self) -> AcquisitionEntry:
        if (self.path is None) == (self.stac is None):
            raise ValueError("a series date needs exactly one of 'path' or 'stac'")
        return self


class SceneEntry(StrictModel):
    """One scene of a dataset: a file, folder or URL, a STAC item, the generated demo scene, or a time series."""

    id: str
    path: Path | str | None = Field(None, description="multi-band GeoTIFF, per-band folder, .SAFE(.zip) or URL")
    stac: str | None = Field(None, description="STAC item (JSON file or URL) whose assets are the scene's bands")
    demo: DemoSource | None = Field(None, description="generate the built-in demo scene (or with dates: > 1 a "
                                    "demo season) instead")
    labels: LabelSource | None = None
    # the scene's reading options, declared by geoseg.io.SceneOptions (key date: or datetime:)
    offset: float | None = scene_option("offset")
    scale: float | None = scene_option("scale")
    date: AcquisitionDate | None = scene_option("date")
    band_names: list[str] | None = None
    mask: Path | str | None = Field(None, description="external mask raster: non-zero = invalid")
    series: list[AcquisitionEntry] | None = Field(None, min_length=1, description="the acquisitions of a time "
                                                  "series on one grid (the dataset sets time_steps)")
    date_range: tuple[dt.date, dt.date] | None = Field(None, description="series: keep dates in [first, last] "
                                                       "(inclusive)")
    min_valid_fraction: float | None = Field(None, ge=0, le=1, description="series: drop dates whose scene has a "
                                             "smaller fraction of valid pixels")

    @field_validator("path", "mask", mode="before")
    @classmethod
    def _location(cls, value):
        """A URL or GDAL ``/vsi`` path stays the string as written (``Path`` folds ``s3://`` to ``s3:/``)."""
        return Path(value) if isinstance(value, str) and not is_virtual(value) else value

    @model_validator(mode="after")
    def _one_path(self) -> SceneEntry:
        given = [key for key in ("path", "stac", "demo", "series") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f"scene {self.id!r}: give exactly one of 'path', 'stac', 'demo' or 'series'"
                             + (f" (found {' and '.join(given)})" if given else ""))
        if not self.is_series and (self.date_range is not None or self.min_valid_fraction is not None):
            raise ValueError(f"scene {self.id!r}: date_range and min_valid_fraction select dates of a 'series'")
        if self.date_range is not None and self.date_range[0] > self.date_range[1]:
            raise ValueError(f"scene {self.id!r}: date_range {self.date_range[0]} .. {self.date_range[1]} ends "
                             "before it starts")
        return self

    @property
    def is_series(self) -> bool:
        """Whether the scene is a time series: ``series`` dates, or a demo season (``demo.dates`` > 1)."""
        return self.series is not None or (self.demo is not None and self.demo.dates > 1)


class Dataset(StrictModel):
    """A named dataset of the catalog: its scenes, classes and feature recipe."""

    description: str = ""
    requires: Path | None = Field(None, description="folder that must exist (e.g. ../shared/data)")
    recipe: str = "s2_24"
    invalid_scl: SCLClasses = scene_option("invalid_scl")
    ignore_codes: list[int] = Field(default_factory=lambda: [0], description="label codes = unlabelled")
    classes: list[ClassDef] = Field(default_factory=list)
    scenes: list[SceneEntry] = Field(min_length=1)
    time_steps: int | None = Field(None, ge=1, le=1000, description="T: dates per cube of a time-series dataset "
                                   "(its scenes give a series)")
    series_rule: Literal["even", "pad"] = Field("even", description="more usable dates than T: T chosen evenly "
                                                "through the season (both rules); fewer: an error (even) or "
                                                "padded with fully masked dates (pad)")

    @model_validator(mode="after")
    def _series(self) -> Dataset:
        for scene in self.scenes:
            if self.time_steps is not None and not scene.is_series:
                raise ValueError(f"scene {scene.id!r} has no 'series', but the dataset has time_steps (every scene "
                                 "of a time-series dataset lists its dates under series:, or is a demo with "
                                 "dates: > 1)")
            if self.time_steps is None and scene.is_series:
                raise ValueError(f"scene {scene.id!r} has a 'series'" + (" (a demo season)" if scene.series is None
                                 else "") + ": set the dataset's time_steps (dates per cube)")
        return self

    @property
    def is_series(self) -> bool:
        """Whether the dataset's scenes are time series (``time_steps`` set)."""
        return self.time_steps is not None

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
        """Class names in catalog order."""
        return [c.name for c in self.classes]


class Catalog(StrictModel):
    """The data catalog (``data_catalog.yaml``): datasets by name."""

    schema_version: Literal[1] = 1
    datasets: dict[str, Dataset]
    source: Path | None = Field(None, exclude=True, description="the file this was read from")

    def dataset(self, name: str) -> Dataset:
        """The dataset called ``name``.

        Raises:
            CatalogError: No such dataset (the hint names the closest one).
        """
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
        """Check that the data a dataset ``requires`` is on this machine.

        Raises:
            CatalogError: Unknown dataset, or its required folder is missing.
        """
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
