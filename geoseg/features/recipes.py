"""Feature recipes: which reflectance bands and indices make a model's input channels.

Recipes are data (``recipes.yaml`` beside this file); the maths lives once, in
:func:`Recipe.compute`, used by the feature-stack writer, the tiler and the predictor alike.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import yaml

from geoseg.errors import ConfigError
from geoseg.features.formula import Formula, compile_formula
from geoseg.io.radiometry import INVALID_FILL
from geoseg.io.sensors import S2_BANDS
from geoseg.utils.closest import did_you_mean

__all__ = ["Recipe", "get_recipe", "list_recipes", "DEFAULT_RECIPE"]

DEFAULT_RECIPE = "s2_24"


@dataclass(frozen=True)
class Recipe:
    """Reflectance bands (channels 0..len(bands)-1) followed by spectral indices."""

    name: str
    bands: tuple[str, ...]
    indices: tuple[tuple[str, str], ...] = ()
    description: str = ""
    _formulas: tuple[Formula, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = [b for b in self.bands if b not in S2_BANDS]
        if unknown:
            raise ConfigError(f"recipe {self.name!r}: unknown bands {unknown}")
        formulas = tuple(compile_formula(text, name) for name, text in self.indices)
        for formula in formulas:
            missing = [b for b in formula.bands if b not in S2_BANDS]
            if missing:
                raise ConfigError(f"recipe {self.name!r}: index {formula.name} uses unknown {missing}")
        object.__setattr__(self, "_formulas", formulas)

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Output channel names: the bands, then the indices."""
        return self.bands + tuple(name for name, _ in self.indices)

    @property
    def num_channels(self) -> int:
        """Number of output channels."""
        return len(self.bands) + len(self.indices)

    @property
    def required_bands(self) -> tuple[str, ...]:
        """Every band the recipe reads, in Sentinel-2 order."""
        needed = set(self.bands).union(*(f.bands for f in self._formulas))
        return tuple(b for b in S2_BANDS if b in needed)

    @property
    def num_mask_channels(self) -> int:
        """Leading channels that are all zero exactly at invalid pixels (the reflectances)."""
        return len(self.bands)

    def compute(self, reflectance: Mapping[str, np.ndarray], valid: np.ndarray) -> np.ndarray:
        """Stack the recipe's channels as float32 ``(C, H, W)``; invalid pixels are 0 everywhere.

        Indices are computed at the precision of ``reflectance`` and rounded to float32 once.

        Args:
            reflectance: band name → reflectance array (H, W), float64 as
                :func:`geoseg.io.reader.read_reflectance` returns it.
            valid: boolean valid-pixel mask (H, W).
        """
        out = np.zeros((self.num_channels, *valid.shape), dtype=np.float32)
        for i, band in enumerate(self.bands):
            out[i] = reflectance[band]
        for j, formula in enumerate(self._formulas, start=len(self.bands)):
            out[j] = formula(reflectance)
        # Invalid pixels are INVALID_FILL (0) in every channel (valid pixels have finite inputs
        # and guarded divisions, so their values are finite).
        np.copyto(out, INVALID_FILL, where=~valid[None])
        return out

    def to_dict(self) -> dict:
        """JSON-serialisable form (read back by :meth:`from_dict`)."""
        return {
            "name": self.name,
            "bands": list(self.bands),
            "indices": dict(self.indices),
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Recipe:
        """Build from :meth:`to_dict`'s form (``indices`` and ``description`` optional)."""
        return cls(
            name=data["name"],
            bands=tuple(data["bands"]),
            indices=tuple((data.get("indices") or {}).items()),
            description=data.get("description", ""),
        )


@functools.cache
def _builtin_recipes() -> dict[str, Recipe]:
    text = resources.files("geoseg.features").joinpath("recipes.yaml").read_text()
    raw = yaml.safe_load(text)["recipes"]
    return {name: Recipe.from_dict({"name": name, **spec}) for name, spec in raw.items()}


def list_recipes() -> list[str]:
    """Names of the built-in recipes, sorted."""
    return sorted(_builtin_recipes())


def get_recipe(name: str | Recipe) -> Recipe:
    """Look up a built-in recipe by name (a Recipe passes through)."""
    if isinstance(name, Recipe):
        return name
    recipes = _builtin_recipes()
    if name not in recipes:
        raise ConfigError(f"unknown recipe {name!r}", hint=did_you_mean(name, recipes))
    return recipes[name]
