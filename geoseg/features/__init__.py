"""The feature stack: recipe channels (reflectances + indices) with the valid-pixel mask."""

from typing import TYPE_CHECKING

from geoseg.features.options import FeatureOptions
from geoseg.features.recipes import Recipe, get_recipe, list_recipes
from geoseg.features.stack import feature_stack, read_features

if TYPE_CHECKING:  # type checkers see the real signature
    from geoseg.features.writer import write_feature_stack

# The GeoTIFF writer needs dask.array; imported on first use so that processes that only
# compute windows (tiler and predictor workers) start without it.
_LAZY = {"write_feature_stack": "geoseg.features.writer"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FeatureOptions",
    "Recipe",
    "feature_stack",
    "get_recipe",
    "list_recipes",
    "read_features",
    "write_feature_stack",
]
