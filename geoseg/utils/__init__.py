"""Small shared helpers: atomic outputs and progress reporting."""

from geoseg.utils.atomic import atomic_folder, atomic_path
from geoseg.utils.progress import DaskProgress, progress_bar

__all__ = ["atomic_path", "atomic_folder", "DaskProgress", "progress_bar"]
