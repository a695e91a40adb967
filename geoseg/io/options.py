"""How a scene is opened (:class:`SceneOptions`), declared once.

One declaration serves the Python API (``open_scene(path, SceneOptions(offset=-1000))``),
``geoseg inspect`` / ``features`` / ``predict`` (their click options are generated from these
fields) and the data catalog, whose scene entries (``offset``, ``scale``, ``date``) and
datasets (``invalid_scl``) declare their keys with :func:`scene_option`: the same bounds,
default and description everywhere.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field

from geoseg.io.sensors import DEFAULT_INVALID_SCL
from geoseg.utils.options import OptionsModel

__all__ = ["SceneOptions", "SCLClasses", "AcquisitionDate", "scene_option", "MAX_OFFSET"]

MAX_OFFSET = 10000  # |DN offset|: Sentinel-2's is 0 or -1000; beyond one reflectance unit it is a typo


def _as_text(value: Any) -> Any:
    """YAML reads ``date: 2017-02-16`` as a date and ``date: 20170216`` as a number: take them as text."""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y%m%dT%H%M%S")
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


SCLClasses = tuple[Annotated[int, Field(ge=0, le=11, description="SCL class")], ...]
"""Scene classification (SCL) classes, each 0–11."""
AcquisitionDate = Annotated[str, BeforeValidator(_as_text)]
"""An acquisition's date (and time) as text: ``YYYYMMDD[THHMMSS]`` or ISO 8601."""


class SceneOptions(OptionsModel):
    """How a scene's files are read onto its grid: resolution, radiometry, invalid classes, acquisition."""

    resolution: float = Field(10.0, gt=0, allow_inf_nan=False, description="target grid resolution in metres")
    offset: float | None = Field(None, ge=-MAX_OFFSET, le=MAX_OFFSET, allow_inf_nan=False,
                                 description="DN offset override (e.g. -1000); default: product metadata, else the "
                                 "documented inference rule")
    scale: float | None = Field(None, gt=0, allow_inf_nan=False,
                                description="DN per unit reflectance [default: 10000, Sentinel-2 digital numbers]; 1 "
                                "for a product stored as reflectance 0-1, 100 for reflectance x 100")
    invalid_scl: SCLClasses = Field(DEFAULT_INVALID_SCL, description="SCL classes treated as invalid")
    date: AcquisitionDate | None = Field(None, validation_alias=AliasChoices("date", "datetime"),
                                         description="acquisition to read from a folder holding band files of "
                                         "several (YYYYMMDD[THHMMSS] as in the file names, or ISO 8601 such as "
                                         "2024-06-12T10:15:59Z)")


def scene_option(name: str) -> Any:
    """The declaration of :class:`SceneOptions` field ``name``, to declare the same key in another model.

    ``offset: float | None = scene_option("offset")`` in a catalog model gets the option's bounds,
    default, alias and description (the annotation is written again, as pydantic needs it).
    """
    return copy.copy(SceneOptions.model_fields[name])
