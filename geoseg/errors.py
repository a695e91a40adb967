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
    "WeightsDownloadError",
    "CheckpointError",
    "OutputError",
    "CorruptStoreError",
    "ScaleError",
    "DomainError",
]


class GeosegError(Exception):
    """Base class of every error caused by user input; printed as one line by the CLI."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str | None = None):
        if path is None and hint is None and message.startswith("Caught ") and "Original Traceback" in message:
            # re-raised by torch's DataLoader from a worker process as "Caught X in DataLoader
            # worker ... Original Traceback ...": keep the worker's own one-line message
            last = message.rstrip().splitlines()[-1]
            message = last.split(": ", 1)[1] if ": " in last else last
        self.path = None if path is None else str(path)
        self.hint = hint
        self.message = message
        parts = [f"{self.path}: {message}" if self.path else message]
        if hint:
            parts.append(hint)
        # one line, always: a multi-line message from GDAL or pydantic is folded
        super().__init__(" ".join(" — ".join(parts).split()))


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


class WeightsDownloadError(ModelError):
    """Pretrained weights could not be downloaded (often: no network); a local file is the fix."""


class CheckpointError(GeosegError, ValueError):
    """A model directory or weights file is missing or inconsistent."""


class OutputError(ConfigError):
    """An output path is refused: it holds files geoseg did not write, is of another kind, or is an input."""


class CorruptStoreError(GeosegError, ValueError):
    """A CubeStore or model bundle on disk is damaged (corrupt manifest, missing or truncated chunk)."""


class ScaleError(SceneError):
    """Reflectance values are outside the range of Sentinel-2 digital numbers (wrong scale)."""


class DomainError(GeosegError, ValueError):
    """A scene does not fit the model's training data (``predict --strict``): another level, other reflectance."""
