"""``config.json`` of a model bundle: :class:`BundleConfig`, every field typed.

Everything a reader acts on is a typed field: the architecture spec (:class:`ModelSpec`; its
``options`` are checked by the architecture's options model when the model is built), the
recipe (a :class:`~geoseg.features.Recipe`, stored as ``Recipe.to_dict()``) and its
channels, the class map, the normalisation, the window, the mask channels (from the recipe)
and how training sized its inputs (``target_size``/``target_mode``, which evaluation
repeats). ``extra`` is a record for people (metrics, epoch, the training options), never
read to decide anything.

Schema versions: 1 kept ``target_size``/``target_mode`` in ``extra`` only; such bundles load
unchanged (the values are lifted into the typed fields). 2 has them as fields. ``domain`` (the
training domain, :mod:`geoseg.bundle.domain`) is optional within version 2: bundles without it
load, and predict checks nothing for them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PlainSerializer, PlainValidator, model_validator

from geoseg import __version__
from geoseg.bundle.domain import TrainingDomain
from geoseg.bundle.normalization import Normalization
from geoseg.config.catalog import ClassDef
from geoseg.config.schema import StrictModel, validate
from geoseg.errors import CheckpointError
from geoseg.features.recipes import Recipe

__all__ = ["BundleConfig", "CONFIG_NAME", "WEIGHTS_NAME", "SCHEMA_VERSION", "ModelSpec", "RecipeField", "TargetMode",
           "read_bundle_config", "recipe_model_options"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
SCHEMA_VERSION = 2
TargetMode = Literal["crop", "resize"]

RESTORE_HINT = ("restore the bundle from a backup, or use another bundle of the training run "
                "(MODEL_DIR/best, final or epoch_N) or retrain")


def _as_recipe(value: Any) -> Recipe:
    if isinstance(value, Recipe):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a recipe object (name, bands, indices), got {type(value).__name__}")
    try:
        return Recipe.from_dict(value)
    except KeyError as err:
        raise ValueError(f"the recipe has no {err.args[0]!r}") from None
    except (TypeError, AttributeError) as err:
        raise ValueError(f"not a recipe ({err})") from None


RecipeField = Annotated[Recipe, PlainValidator(_as_recipe), PlainSerializer(Recipe.to_dict, return_type=dict)]
"""A :class:`~geoseg.features.Recipe` field of a pydantic model, stored as ``Recipe.to_dict()``."""


class ModelSpec(StrictModel):
    """A model's ``spec``: what ``create_model(**spec.model_dump())`` rebuilds the architecture from."""

    name: str = Field(description="architecture (geoseg.models.list_models())")
    in_channels: int
    num_classes: int
    encoder: str | None = Field(None, description="encoder name (None: the architecture's default)")
    options: dict[str, Any] = Field(default_factory=dict, description="architecture options, checked by the "
                                                                      "architecture's options model (ArchOptions)")
    aux_params: dict[str, Any] | None = Field(None, description="the classification head's parameters")
    channel_names: list[str] | None = None


class BundleConfig(StrictModel):
    """A model bundle's ``config.json``: what rebuilds the model and prepares its inputs."""

    schema_version: int = SCHEMA_VERSION
    geoseg_version: str = __version__
    model: ModelSpec = Field(description="model.spec: rebuilds the architecture with create_model(**spec)")
    recipe: RecipeField = Field(description="the recipe of the input channels (stored as Recipe.to_dict())")
    channel_names: list[str]
    classes: list[ClassDef] = Field(description="class of training index i is classes[i]")
    normalization: Normalization
    window: int = Field(description="cube/window size the model was trained on (pixels)")
    predict_window: int = Field(description="default prediction window (pixels): the size whose forward pass "
                                            "was fastest per pixel when training started (geoseg.bundle."
                                            "window_choice); the training window in bundles written before")
    predict_window_costs: dict[int, float] | None = Field(
        None, description="forward seconds per megapixel by window size, measured when training started: predict "
                          "lays each scene out with the size of least total cost (a small scene gets a smaller window)")
    mask_channels: int = Field(description="leading channels that are all 0 at invalid pixels "
                                           "(the recipe's num_mask_channels)")
    time_steps: int | None = Field(None, description="dates per cube of the training series store (the model takes "
                                                     "(N, T, C, H, W); its temporal mode is in model.options); "
                                                     "None: one date")
    target_size: int | None = Field(None, description="training input size (None: the cube size)")
    target_mode: TargetMode = Field("crop", description="how training reached target_size: random crops, "
                                                        "or a resize (which evaluation repeats)")
    domain: TrainingDomain | None = Field(None, description="what the model was trained on (levels, offset rule, "
                                                            "scale, channel statistics); None in bundles written "
                                                            "before it was recorded: predict checks nothing")
    extra: dict[str, Any] = Field(default_factory=dict, description="a record for people: metrics, epoch, "
                                                                    "training options (never read to decide)")

    @model_validator(mode="before")
    @classmethod
    def _derived_and_legacy(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        extra = data.get("extra") if isinstance(data.get("extra"), dict) else {}
        for key in ("target_size", "target_mode"):  # schema 1: only in extra
            if key not in data and extra.get(key) is not None:
                data[key] = extra[key]
        if data.get("predict_window") is None and isinstance(data.get("window"), int):  # bundles before it
            data["predict_window"] = data["window"]
        if "mask_channels" not in data and isinstance(data.get("recipe"), Mapping | Recipe):
            with contextlib.suppress(ValueError):  # a broken recipe: the recipe field's own error names it
                data["mask_channels"] = _as_recipe(data["recipe"]).num_mask_channels
        return data

    @property
    def eval_resize(self) -> int | None:
        """The size evaluation resizes whole cubes to (training used ``resize``), else None."""
        return self.target_size if self.target_mode == "resize" else None


def read_bundle_config(directory: str | Path) -> BundleConfig:
    """The validated ``config.json`` of the bundle in ``directory`` (weights are not read).

    Raises:
        CheckpointError: no config.json, or it is not valid JSON / not an object.
        ConfigError: it does not validate (names the key).
    """
    cfg_path = Path(directory) / CONFIG_NAME
    try:
        raw = json.loads(cfg_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"not a model directory (no {CONFIG_NAME})", path=Path(directory),
                              hint="pass MODEL_DIR/best (or final, epoch_N) written by geoseg train") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        what = f"{err.msg} at line {err.lineno}" if isinstance(err, json.JSONDecodeError) else "not text"
        raise CheckpointError(f"damaged model bundle: {CONFIG_NAME} is not valid JSON ({what})", path=cfg_path,
                              hint=RESTORE_HINT) from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"damaged model bundle: {CONFIG_NAME} holds a JSON {type(raw).__name__}, not an "
                              "object", path=cfg_path, hint=RESTORE_HINT)
    return validate(BundleConfig, raw, str(cfg_path))


def recipe_model_options(name: str, options: Mapping[str, Any], mask_channels: int) -> dict[str, Any]:
    """Architecture options with the recipe's ``mask_channels`` (``Recipe.num_mask_channels``)
    for architectures that take it (RSPRUNet++'s masked BatchNorm); a value given explicitly
    in ``options`` wins.
    """
    from geoseg.models import get_model_class

    opts = dict(options)
    if any(o["name"] == "mask_channels" for o in get_model_class(name).Options.describe()):
        opts.setdefault("mask_channels", int(mask_channels))
    return opts
