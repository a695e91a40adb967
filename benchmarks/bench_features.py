"""Feature-stack throughput against a plain rasterio windowed read of the same bands.

    python benchmarks/bench_features.py [--size 4098] [--block 512] [--out docs/benchmarks_features.md]

(a) baseline: single-threaded rasterio windowed reads of the 11 s2_24 bands at their native
    resolutions (what any reader must at least do);
(b) geoseg ``read_features`` on one thread: reading, bilinear resampling onto 10 m, offset,
    masking (SCL + nodata) and the 13 indices;
(c) ``geoseg features`` (write_feature_stack) with dask threads on all cores, including
    DEFLATE compression and writing the 24-band GeoTIFF.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import rasterio
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

from geoseg.demo import generate_demo_scene  # noqa: E402
from geoseg.features import get_recipe, read_features, write_feature_stack  # noqa: E402
from geoseg.io import iter_blocks, open_scene  # noqa: E402


def plain_read(scene, bands, block: int) -> float:
    start = time.perf_counter()
    datasets = {b: rasterio.open(scene.bands[b].path) for b in bands}
    h, w = scene.grid.shape
    for window in iter_blocks(h, w, block):
        for band, ds in datasets.items():
            f = round(scene.bands[band].resolution / 10)
            ds.read(1, window=Window(window.col_off // f, window.row_off // f,
                                     -(-window.width // f), -(-window.height // f)))
    for ds in datasets.values():
        ds.close()
    return time.perf_counter() - start


def geoseg_read(scene, block: int) -> float:
    start = time.perf_counter()
    for window in iter_blocks(*scene.grid.shape, block):
        read_features(scene, window, "s2_24")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4098)
    parser.add_argument("--block", type=int, default=512)
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"generating a {args.size} x {args.size} demo scene ...", flush=True)
        demo = generate_demo_scene(Path(tmp) / "demo", size=args.size, seed=1, progress=False)
        scene = open_scene(demo.scene)
        mpx = args.size * args.size / 1e6
        bands = get_recipe("s2_24").required_bands
        plain_read(scene, bands, args.block)  # warm the page cache
        t_plain = plain_read(scene, bands, args.block)
        t_read = geoseg_read(scene, args.block)
        start = time.perf_counter()
        write_feature_stack(scene, Path(tmp) / "stack.tif", block=args.block, progress=False)
        t_write = time.perf_counter() - start
    rows = [
        ("(a) plain rasterio windowed read, 11 bands, 1 thread", t_plain, 1.0),
        ("(b) geoseg read_features (s2_24), 1 thread", t_read, t_plain / t_read),
        ("(c) geoseg features → 24-band GeoTIFF, all cores", t_write, t_plain / t_write),
    ]
    lines = [
        f"Feature stack, {args.size} x {args.size} px ({mpx:.1f} Mpx), block {args.block}.",
        f"Machine: {machine()}.",
        "",
        "| run | seconds | Mpx/s | speed vs (a) |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {t:.2f} | {mpx / t:.2f} | {ratio:.2f}x |" for name, t, ratio in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
