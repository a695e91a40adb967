"""Prediction throughput against the window size: what the default ``predict`` window should be.

    python benchmarks/bench_predict_window.py [--size 1200] [--windows 64,128,256,384,512]
                                              [--train-window 64] [--repeat 2] [--batch-size 8]
                                              [--out docs/benchmarks_predict_window.md]

A model is trained on small cubes (the demo: 64 px), but nothing ties the prediction window to
that size: a fully convolutional model predicts any multiple of its output stride. Small windows
cost a fixed overhead per window and per batch; large windows need more memory per batch, and a
model whose activations no longer fit the CPU caches slows down per pixel. Which wins depends on
the architecture, so the trainer measures it (``geoseg.bundle.window_choice``: a few forward
passes when training starts) and records the fastest size in the bundle as ``predict_window``.
This benchmark checks that choice end to end: the ``chosen`` column marks the size the trainer's
measurement picks for the same model.

``geoseg predict`` runs end to end (reading, features, forward, blending, the COG) on one
generated demo scene with random-weight models (the cost does not depend on the weights), every
window size in turn, ``--repeat`` rounds alternating the sizes so that all see the same load. The
baseline is the training window (what ``predict`` used before the default was measured). The
table gives seconds, windows run, megapixels per second, the ratio to the baseline and the peak
RSS of a run in its own subprocess, and the map agreement with the baseline's map.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _demo import demo_scene  # noqa: E402
from _machine import machine, peak_rss_mb  # noqa: E402

MODELS = {"unet/resnet18": ("unet", "resnet18"), "rsprunetpp/resnest14d": ("rsprunetpp", "resnest14d")}


def _bundle(work: Path, name: str, train_window: int) -> tuple[Path, int]:
    """The model's bundle and the window the trainer's measurement would choose for it."""
    from bench_predict import _bundle as make_bundle

    from geoseg.bundle import load_bundle
    from geoseg.bundle.window_choice import measure_predict_window

    arch, encoder = MODELS[name]
    path = make_bundle(work, arch, encoder, window=train_window, name=name.replace("/", "_"))
    return path, measure_predict_window(load_bundle(path).model, 24, train_window).window


def _one(scene: str, bundle: str, window: int, batch: int, out: str) -> dict:
    from geoseg.predict import predict_scene

    t0 = time.perf_counter()
    summary = predict_scene(scene, bundle, out, window=window, batch_size=batch, device="cpu", progress=False,
                            engine="torch")
    return {"seconds": time.perf_counter() - t0, "windows": summary.windows_run, "peak_mb": peak_rss_mb()}


def _worker(args: argparse.Namespace) -> None:
    result = _one(args.scene, args.bundle, args.window, args.batch_size, args.result.removesuffix(".json") + ".tif")
    Path(args.result).write_text(json.dumps(result))


def _isolated(scene: Path, bundle: Path, window: int, work: Path, args: argparse.Namespace) -> dict:
    """A run in its own process: its peak RSS is that of one prediction at this window."""
    result = work / f"rss_{bundle.name}_{window}.json"
    subprocess.run([sys.executable, __file__, "--worker", "--scene", str(scene), "--bundle", str(bundle),
                    "--window", str(window), "--batch-size", str(args.batch_size), "--result", str(result)],
                   check=True)
    return json.loads(result.read_text())


def _agreement(a: Path, b: Path) -> float:
    import numpy as np
    import rasterio

    with rasterio.open(a) as ra, rasterio.open(b) as rb:
        x, y = ra.read(1), rb.read(1)
        valid = x != (ra.nodata if ra.nodata is not None else 255)
    return float(np.mean(x[valid] == y[valid]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1200, help="demo scene side in pixels (multiple of 6)")
    parser.add_argument("--windows", default="64,128,256,384,512")
    parser.add_argument("--train-window", type=int, default=64, help="the bundles' training window (the baseline)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/geoseg-bench"),
                        help="reuse the demo scene <cache>/demo_<size> found here (read-only)")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks_predict_window.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", help=argparse.SUPPRESS)
    parser.add_argument("--window", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return

    windows = [int(w) for w in args.windows.split(",")]
    if args.train_window not in windows:
        windows.insert(0, args.train_window)
    with tempfile.TemporaryDirectory(prefix="geoseg-bench-window-") as tmp:
        work = Path(tmp)
        scene = demo_scene(args.cache, work, args.size)
        load_before = os.getloadavg()
        rows = []
        for name in args.models.split(","):
            bundle, chosen = _bundle(work, name, args.train_window)
            runs: dict[int, list[dict]] = {w: [] for w in windows}
            for i in range(args.repeat):  # alternate the sizes: every size sees the same load
                for w in windows:
                    out = work / f"map_{bundle.name}_{w}_{i}.tif"
                    runs[w].append(_one(str(scene), str(bundle), w, args.batch_size, str(out)))
                    print(f"  {name} window {w}: {runs[w][-1]['seconds']:.2f} s, {runs[w][-1]['windows']} windows",
                          flush=True)
            base = min(r["seconds"] for r in runs[args.train_window])
            for w in windows:
                best = min(r["seconds"] for r in runs[w])
                rss = _isolated(scene, bundle, w, work, args)["peak_mb"]
                agree = _agreement(work / f"map_{bundle.name}_{args.train_window}_0.tif", work / f"map_{bundle.name}_{w}_0.tif")
                rows.append((name, w, best, runs[w][0]["windows"], args.size**2 / 1e6 / best, best / base, rss, agree,
                             "**chosen**" if w == chosen else ""))
        load_after = os.getloadavg()
    lines = [
        "# Prediction throughput against the window size",
        "",
        f"`python benchmarks/bench_predict_window.py --size {args.size} --repeat {args.repeat}` — "
        f"{machine()}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after.",
        f"Demo scene {args.size} x {args.size} px, batch {args.batch_size}, overlap window / 4, random weights, "
        f"models trained on {args.train_window} px windows; best of {args.repeat} alternating rounds; "
        f"ratio = seconds / seconds at the training window; peak RSS of one run in its own process; "
        f"agreement = share of valid pixels with the same class as the training-window map.",
        "",
        "| model | window | seconds | windows | Mpx/s | ratio | peak RSS MB | agreement | trainer's choice |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines += [f"| {n} | {w} | {s:.2f} | {k} | {mps:.2f} | {r:.2f} | {rss:.0f} | {a * 100:.2f} % | {c} |"
              for n, w, s, k, mps, r, rss, a, c in rows]
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
