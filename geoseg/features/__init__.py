"""The feature stack: recipe channels (reflectances + indices) with the valid-pixel mask."""

from geoseg.features.recipes import DEFAULT_RECIPE, Recipe, get_recipe, list_recipes
from geoseg.features.stack import feature_stack, read_features
from geoseg.features.writer import write_feature_stack

__all__ = [
    "DEFAULT_RECIPE",
    "Recipe",
    "feature_stack",
    "get_recipe",
    "list_recipes",
    "read_features",
    "write_feature_stack",
]
