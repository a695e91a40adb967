"""Feature-stack throughput against a plain rasterio windowed read of the same bands.

    python benchmarks/bench_features.py [--size 4098] [--block 512] [--rounds 5] [--out docs/benchmarks_features.md]

(a) baseline: single-threaded rasterio windowed reads of the 11 s2_24 bands at their native
    resolutions (what any reader must at least do);
(b) geoseg ``read_features`` on one thread: reading (SCL too), bilinear resampling onto 10 m,
    offset, masking (SCL + nodata) and the 13 indices — one compiled pass per window;
(b') the same without the fused kernel: numpy resampling and masking, then the index kernel
    (the path before the fused kernel, and the path without numba but for the index kernel);
(c) ``geoseg features`` (write_feature_stack) with dask threads on all cores, including
    DEFLATE compression and writing the 24-band GeoTIFF.

(a), (b) and (b') alternate for ``--rounds`` rounds, each from freshly opened files (both decode
every block), so a loaded machine disturbs both alike; every round is listed and the table
gives the median. The one-off warm-up of (b) (loading the compiled kernel, opening the
files) is timed before the rounds and reported apart.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import rasterio
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

from geoseg.demo import generate_demo_scene  # noqa: E402
from geoseg.features import get_recipe, read_features, write_feature_stack  # noqa: E402
from geoseg.features import stack as stack_module  # noqa: E402
from geoseg.io import iter_blocks, open_scene  # noqa: E402
from geoseg.io.reader import close_cached  # noqa: E402


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


def geoseg_read(scene, block: int, fused: bool = True) -> float:
    close_cached()  # fresh file handles: blocks are decoded again, as in plain_read
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if not fused:  # the two-step path: numpy resampling and masking, then the index kernel
            stack.enter_context(mock.patch.object(stack_module, "compile_fused_kernel", lambda recipe: None))
        for window in iter_blocks(*scene.grid.shape, block):
            read_features(scene, window, "s2_24")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4098)
    parser.add_argument("--block", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of (a) and (b)")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    args = parser.parse_args()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"generating a {args.size} x {args.size} demo scene ...", flush=True)
        demo = generate_demo_scene(Path(tmp) / "demo", size=args.size, seed=1, progress=False)
        scene = open_scene(demo.scene)
        mpx = args.size * args.size / 1e6
        bands = get_recipe("s2_24").required_bands
        plain_read(scene, bands, args.block)  # warm the page cache
        start = time.perf_counter()
        read_features(scene, Window(0, 0, 16, 16), "s2_24")
        t_warm = time.perf_counter() - start
        plains, reads, twostep = [], [], []
        for r in range(args.rounds):
            plains.append(plain_read(scene, bands, args.block))
            reads.append(geoseg_read(scene, args.block))
            twostep.append(geoseg_read(scene, args.block, fused=False))
            print(f"round {r + 1}: (a) {plains[-1]:.2f} s, (b) {reads[-1]:.2f} s, (b') {twostep[-1]:.2f} s, "
                  f"(a)/(b) {plains[-1] / reads[-1]:.2f}", flush=True)
        start = time.perf_counter()
        write_feature_stack(scene, Path(tmp) / "stack.tif", block=args.block, progress=False)
        t_write = time.perf_counter() - start
    load_end = os.getloadavg()
    t_plain, t_read, t_two = statistics.median(plains), statistics.median(reads), statistics.median(twostep)
    ratios = [a / b for a, b in zip(plains, reads, strict=True)]
    ratios_two = [a / b for a, b in zip(plains, twostep, strict=True)]
    rows = [  # speed vs (a): the median of the per-round ratios (each round's runs share the machine's load)
        ("(a) plain rasterio windowed read, 11 bands, 1 thread", t_plain, 1.0),
        ("(b) geoseg read_features (s2_24), 1 thread", t_read, statistics.median(ratios)),
        ("(b') the same without the fused kernel (numpy resampling + index kernel)", t_two,
         statistics.median(ratios_two)),
        ("(c) geoseg features → 24-band GeoTIFF, all cores", t_write, t_plain / t_write),
    ]
    lines = [
        f"Feature stack, {args.size} x {args.size} px ({mpx:.1f} Mpx), block {args.block}.",
        f"Machine: {machine()}.",
        f"Load average (1, 5, 15 min) at start {_load(load_start)}, at the end {_load(load_end)}.",
        "",
        "| run | seconds | Mpx/s | speed vs (a) |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {t:.2f} | {mpx / t:.2f} | {ratio:.2f}x |" for name, t, ratio in rows]
    lines += [
        "",
        f"(a), (b), (b'): median seconds of {args.rounds} alternating rounds from freshly opened files, speed vs (a): "
        f"median of the per-round ratios; every round "
        "(a, b, b', a/b): " + "; ".join(f"{a:.2f}, {b:.2f}, {c:.2f}, {q:.2f}"
                                         for a, b, c, q in zip(plains, reads, twostep, ratios, strict=True))
        + f". (b) speed vs (a) per round: median {statistics.median(ratios):.2f}, best {max(ratios):.2f}, "
        f"worst {min(ratios):.2f}; "
        f"(b') / (b) time per round: median {statistics.median(c / b for b, c in zip(reads, twostep, strict=True)):.2f}. "
        f"Warm-up of (b) before the rounds (compiled kernel loaded from the cache, files opened): {t_warm:.2f} s.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def _load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.1f}" for x in load)


if __name__ == "__main__":
    main()
