"""One error hierarchy: every user-facing error is a ``GeosegError``.

Leaves also inherit the matching built-in, so ``except ValueError`` keeps working.
The CLI prints ``str(err)`` on one line and exits with code 2 (no traceback unless ``--debug``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "GeosegError",
    "ConfigError",
    "CatalogError",
    "SceneError",
    "MissingFileError",
    "BandError",
    "CorruptRasterError",
    "CRSMismatchError",
    "EmptyAreaError",
    "LabelError",
    "ModelError",
    "CheckpointError",
]


class GeosegError(Exception):
    """Base class of every error caused by user input; printed as one line by the CLI."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str | None = None):
        self.path = None if path is None else str(path)
        self.hint = hint
        parts = [f"{self.path}: {message}" if self.path else message]
        if hint:
            parts.append(hint)
        super().__init__(" — ".join(parts))


class ConfigError(GeosegError, ValueError):
    """A configuration file or option is invalid (unknown key, wrong type, bad value)."""


class CatalogError(ConfigError):
    """``data_catalog.yaml`` is invalid or names something that does not exist."""


class SceneError(GeosegError, ValueError):
    """A scene cannot be read as Sentinel-2 data."""


class MissingFileError(SceneError, FileNotFoundError):
    """An input file or folder does not exist."""


class BandError(SceneError):
    """A band is missing, duplicated, or the band count is wrong."""


class CorruptRasterError(SceneError):
    """A raster exists but GDAL cannot read it (truncated, empty or not a raster)."""


class CRSMismatchError(SceneError):
    """Inputs that must share a CRS or grid do not."""


class EmptyAreaError(GeosegError, ValueError):
    """A scene, window or selection holds no valid pixels."""


class LabelError(GeosegError, ValueError):
    """Labels do not match the class map (unknown codes, wrong grid, unreadable)."""


class ModelError(GeosegError, ValueError):
    """Unknown architecture, encoder, or incompatible model options."""


class CheckpointError(GeosegError, ValueError):
    """A model directory or weights file is missing or inconsistent."""
