"""geoseg: Sentinel-2 scenes to land-cover maps.

Stages (one subpackage each, in data-flow order): ``io`` (``open_scene`` → Scene) →
``features`` (``read_features``, ``feature_stack``) → ``tiling`` (``tile_dataset`` → CubeStore)
→ ``data`` → ``models`` → ``train`` → ``predict`` (+ ``stitch``) → ``export``. ``config`` reads
the data catalog, ``pipeline`` runs the stages from one YAML file and ``cli`` is a thin layer
over them (docs/architecture.md: which package may import which).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("geoseg")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
