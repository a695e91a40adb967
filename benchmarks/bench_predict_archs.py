"""Minutes for a full Sentinel-2 tile with each seed architecture, per inference engine, on this CPU.

    python benchmarks/bench_predict_archs.py [--size 2046] [--engines torch torch-bf16 onnxruntime]
                                             [--archs rsprunetpp unet3plus unet deeplabv3plus pspnet]
                                             [--out docs/benchmarks_predict_archs.md]

For each seed architecture with its default encoder (random weights, window 256, overlap 64,
batch 8), ``geoseg predict`` runs end to end on a generated ``--size``² demo scene with each
engine, each time paired in one process with (a) the bare torch float32 forward over the same
windows (bench_predict.py's worker), so every ratio is measured under one load. The full-tile
minutes scale the measured seconds by the tile's windows over the windows (b) ran (a 10980² tile lays out
3,249 windows of 256 px at overlap 64; prediction is linear in windows, docs/benchmarks_predict_fulltile.md
checks it on a real full tile). ``torch-bf16`` runs with the bfloat16 map check off (random
weights have near-tied classes; a trained model passes it, see docs/benchmarks_predict.md), so
its figures are speed only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import bench_predict as bp
from _demo import demo_scene
from _machine import machine

SEED_ARCHS = {  # seed → architecture, default encoder
    "rsprunetpp": ("000", "resnest101e"),
    "unet3plus": ("001", "convnext_tiny"),
    "unet": ("002", "resnet34"),
    "deeplabv3plus": ("003", "resnet50"),
    "pspnet": ("004", "resnet50"),
}
TILE = 10980


def _tile_windows(window: int = bp.WINDOW, overlap: int = bp.WINDOW // 4) -> int:
    from geoseg.predict.windows import window_layout

    return len(window_layout(TILE, TILE, window, overlap))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2046, help="demo scene side in pixels (multiple of 6)")
    parser.add_argument("--archs", nargs="+", default=list(SEED_ARCHS), choices=list(SEED_ARCHS))
    parser.add_argument("--engines", nargs="+", default=["torch", "torch-bf16", "onnxruntime"],
                        choices=["torch", "torch-bf16", "onnxruntime"])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/geoseg-bench"))
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks_predict_archs.md")
    args = parser.parse_args()

    load_before = os.getloadavg()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="geoseg-bench-archs-") as tmp:
        work = Path(tmp)
        scene = demo_scene(args.cache, work, args.size)
        rows = []
        for arch in args.archs:
            seed, encoder = SEED_ARCHS[arch]
            bundle = bp._bundle(work, arch, encoder, name=arch)
            for engine in args.engines:
                # onnxruntime twice: the first run exports the graph (reported apart), the second reads the cache
                run = argparse.Namespace(batch_size=8, repeat=2 if engine == "onnxruntime" else 1, engine=engine,
                                         arch=arch, torch_threads=0, ignore_agreement=engine == "torch-bf16")
                print(f"{arch}/{encoder}, {engine}:", flush=True)
                try:
                    paired = bp._run("paired", scene, bundle, work, run)
                except SystemExit as failed:  # e.g. a model onnxruntime cannot take
                    rows.append((seed, arch, encoder, engine, str(failed).splitlines()[-1][-160:], None, None))
                    continue
                a, b = paired["bare"][-1], paired["geoseg"][-1]
                b["first"] = paired["geoseg"][0]["seconds"]
                rows.append((seed, arch, encoder, engine, b["engine"], a, b))
    tile = _tile_windows()
    lines = [
        "## Full tile per seed architecture",
        "",
        f"`python benchmarks/bench_predict_archs.py --size {args.size}` — {machine()}; load average (1/5/15 min) "
        f"before {'/'.join(f'{v:.1f}' for v in load_before)}, after {'/'.join(f'{v:.1f}' for v in os.getloadavg())}; "
        f"{(time.perf_counter() - start) / 60:.0f} min in all.",
        f"Random weights, window {bp.WINDOW}, overlap {bp.WINDOW // 4}, batch 8, torch's default threads; demo scene "
        f"{args.size}² px; (a) the bare torch float32 forward over (b)'s windows, in (b)'s process right after it. "
        f"Full tile: seconds × {tile:,} windows of a {TILE}² tile / the scene's windows. torch-bf16 with the map "
        "check off (speed only: random weights fail it).",
        "",
        "onnxruntime: the second of two runs (the graph cached; the first run, with the export, in brackets).",
        "",
        "| seed | architecture | encoder | engine | windows | (a) bare forward s | (b) predict end to end s "
        "| (b)/(a) | full tile, minutes |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for seed, arch, encoder, engine, ran, a, b in rows:
        if a is None:
            lines.append(f"| {seed} | {arch} | {encoder} | {engine} | – | – | failed: {ran} | – | – |")
            continue
        minutes = b["seconds"] * tile / b["windows"] / 60
        first = f" ({b['first']:.1f})" if engine == "onnxruntime" else ""
        lines.append(f"| {seed} | {arch} | {encoder} | {engine if ran == engine else f'{engine} (ran {ran})'} | "
                     f"{b['windows']} | {a['seconds']:.1f} | {b['seconds']:.1f}{first} | {b['seconds'] / a['seconds']:.2f} | "
                     f"{minutes:.1f} |")
    table = "\n".join(lines)
    print(table)
    args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
