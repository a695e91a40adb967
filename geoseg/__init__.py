"""geoseg: Sentinel-2 scenes to land-cover maps.

Stages (one subpackage each, in data-flow order):
``config`` → ``io`` (Scene) → ``features`` (FeatureStack) → ``tiling`` (CubeStore)
→ ``models`` → ``train`` → ``predict`` (+ stitcher) → ``pipeline``; ``cli`` is a thin layer.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("geoseg")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
