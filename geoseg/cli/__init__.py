"""Command-line interface: a thin layer over the stage APIs (``geoseg --help``)."""

from geoseg.cli.main import main

__all__ = ["main"]
