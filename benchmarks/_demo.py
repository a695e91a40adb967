"""The demo scene a benchmark runs on: reused read-only from a cache folder, else generated."""

from __future__ import annotations

from pathlib import Path


def demo_scene(cache: Path, work: Path, size: int) -> Path:
    """The scene folder of the ``size``² demo scene (seed 0): ``cache/demo_<size>/`` when it holds one,
    else generated under ``work/demo_<size>/``."""
    from geoseg.demo import generate_demo_scene

    root = cache / f"demo_{size}"
    if not (root / "labels.tif").exists():
        root = work / f"demo_{size}"
    if not (root / "labels.tif").exists():
        print(f"generating a {size} x {size} demo scene ...", flush=True)
        generate_demo_scene(root, size=size, seed=0, progress=False)
    return next(p for p in sorted(root.iterdir()) if p.is_dir())
