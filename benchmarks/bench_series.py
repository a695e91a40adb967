"""Benchmark the time-series models on the seasonal demo: quality against one date, and cost against T.

Part 1 (``quality``): one seeded demo season (``geoseg demo-data --dates 6``), tiled twice with the
same cube size, split fractions, split blocks and split seed: as a 6-date series store and as a
single-date store of its clearest date (the date with the most valid pixels; every date has its
own clouds, and cropland/grassland differ little from one date to the next, so the clearest
date stands for the best single date). Four models, the same budget (epochs, batch, lr,
one-cycle schedule, class weights, seed), scored on the test blocks:

(a) 2D UNet (ResNet-18 to depth 4, demo.yaml's light model) on the clearest date — baseline;
(b) the same UNet with the dates as channels (``temporal=channels``, 6 x 24 input channels);
(c) the same UNet with the temporal-attention front end (``temporal=attention``);
(d) ``deeplabv3plus3d`` (ResNet-18 inflated to 3D, depth 4, 64-channel ASPP and decoder).

Part 2 (``cost``): forward seconds per window (eval mode, 128 px, batch 1) of (c) and (d) for
T = 1, 3, 6, and the peak RSS of ``geoseg predict`` in a fresh subprocess (T = 1: model (a);
T = 3, 6: ``--series`` with the attention model (c), which takes any T) for T = 1, 3, 6 dates of the small training scene and
of a 4x larger scene: memory follows T x window, not the scene.

    python benchmarks/bench_series.py                 # both parts (~10-15 min on 2 cores)
    python benchmarks/bench_series.py --epochs 8 --size 384 --large 768

Writes docs/benchmarks_series.md (tables, machine, load average); prints every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._machine import machine  # noqa: E402

CLASSES = ["water", "forest", "cropland", "grassland", "built-up", "bare soil"]
COLORS = ["#1f78b4", "#1b7837", "#f1c232", "#a6d96a", "#d7301f", "#c2a27d"]
LIGHT_UNET = {"encoder_depth": 4, "decoder_channels": [128, 64, 32, 16]}
MODELS: dict[str, tuple[str, str, dict[str, Any]]] = {  # key: (label, architecture, options)
    "a": ("(a) 2D UNet, clearest date", "unet", LIGHT_UNET),
    "b": ("(b) UNet, dates as channels", "unet", {**LIGHT_UNET, "temporal": "channels"}),
    "c": ("(c) UNet + temporal attention", "unet", {**LIGHT_UNET, "temporal": "attention"}),
    "d": ("(d) deeplabv3plus3d", "deeplabv3plus3d", {"encoder_depth": 4, "aspp_channels": 64,
                                                      "decoder_channels": 64}),
}
TILE = {"cube_size": 64, "overlap": 0, "min_valid": 0.2, "split": (0.7, 0.15, 0.15), "split_block": 2, "seed": 1}


def _catalog(path: Path, season, clearest: int) -> None:
    classes = [{"code": i + 1, "name": n, "color": c} for i, (n, c) in enumerate(zip(CLASSES, COLORS, strict=True))]
    labels = {"raster": str(season.labels)}
    data = {"schema_version": 1, "datasets": {
        "season": {"time_steps": len(season.scenes), "classes": classes, "ignore_codes": [0],
                   "scenes": [{"id": "season", "series": [{"path": str(p)} for p in season.scenes], "labels": labels}]},
        "clearest": {"classes": classes, "ignore_codes": [0],
                     "scenes": [{"id": "clearest", "path": str(season.scenes[clearest]), "labels": labels}]},
    }}
    path.write_text(yaml.safe_dump(data))


def _valid_fractions(season) -> list[float]:
    from geoseg.io import open_scene
    from geoseg.io.summary import summarise_scene

    return [summarise_scene(open_scene(p)).valid_fraction for p in season.scenes]


def _train_and_score(key: str, store: Path, out: Path, epochs: int) -> dict[str, Any]:
    from geoseg.train import EvaluateOptions, TrainConfig, evaluate, train

    _, arch, options = MODELS[key]
    config = TrainConfig(cubes=store, out=out / "model", model=arch, encoder="resnet18", model_options=options,
                         pretrained=False, epochs=epochs, schedule="onecycle", batch_size=8, lr=0.002,
                         class_weights="auto", seed=0, progress=False, overwrite=True)
    start = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - start
    best = result.best or result.final
    scores = evaluate(best, store, out / "report", EvaluateOptions(split="test", save_examples=0)).metrics
    per_class = {name: scores["per_class"][name]["iou"] for name in CLASSES if name in scores["per_class"]}
    return {"miou": scores["miou"], "iou": per_class, "train_s": seconds, "best_epoch": result.best_epoch,
            "test_pixels": scores["num_pixels"], "bundle": str(best)}


def _forward_seconds(arch: str, options: dict, steps: int, window: int = 128, reps: int = 3) -> float:
    import torch

    from geoseg.models import create_model

    torch.manual_seed(0)
    model = create_model(arch, in_channels=24, num_classes=6, encoder="resnet18", **options).eval()
    x = torch.rand(1, steps, 24, window, window)
    with torch.inference_mode():
        model(x)  # warm-up
        start = time.perf_counter()
        for _ in range(reps):
            model(x)
    return (time.perf_counter() - start) / reps


_PREDICT = """
import sys
sys.path.insert(0, {repo!r})
from benchmarks._machine import peak_rss_mb
from geoseg.cli.main import main
try:
    main(sys.argv[1:])
finally:
    print("PEAK_RSS_MB", peak_rss_mb())
"""


def _predict_peak(bundle: str, scenes: list[Path], out: Path) -> tuple[float, float]:
    """Peak RSS (MB) and wall seconds of ``geoseg predict`` (``--series`` for several dates) in a fresh subprocess."""
    argv = [sys.executable, "-c", _PREDICT.format(repo=str(REPO)), "predict", "-m", bundle,
            *(["--series"] if len(scenes) > 1 else []), *[a for p in scenes for a in ("-s", str(p))], "--out", str(out), "--window", "128",
            "--batch-size", "4", "--engine", "torch", "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    peak = next(float(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("PEAK_RSS_MB"))
    return peak, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=480, help="training scene size (px, multiple of 6)")
    parser.add_argument("--large", type=int, default=960, help="larger scene for the prediction memory (px)")
    parser.add_argument("--epochs", type=int, default=20, help="the budget of every model (demo_series.yaml: 20)")
    parser.add_argument("--seed", type=int, default=0, help="demo season seed")
    args = parser.parse_args()

    from geoseg.demo import generate_demo_series
    from geoseg.tiling import TileOptions, tile_dataset

    load_start, wall_start = os.getloadavg(), time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench_series_"))
    season = generate_demo_series(work / "season", size=args.size, seed=args.seed, dates=6, progress=False)
    fractions = _valid_fractions(season)
    clearest = max(range(len(fractions)), key=fractions.__getitem__)
    print("valid fraction per date:", ", ".join(f"{f:.3f}" for f in fractions), f"-> clearest date {clearest + 1}")
    _catalog(work / "catalog.yaml", season, clearest)
    stores = {}
    for name in ("season", "clearest"):
        stores[name] = work / f"cubes_{name}"
        summary = tile_dataset(work / "catalog.yaml", name, stores[name], TileOptions(**TILE, workers=1, progress=False))
        print(f"tiled {name}: {summary.cubes} cubes {summary.splits}")

    results = {}
    for key in MODELS:
        store = stores["clearest" if key == "a" else "season"]
        results[key] = _train_and_score(key, store, work / key, args.epochs)
        r = results[key]
        print(f"{MODELS[key][0]}: test mIoU {r['miou']:.4f} ({r['train_s']:.0f} s training), "
              + ", ".join(f"{n} {_iou(v)}" for n, v in r["iou"].items()), flush=True)

    forward = {key: {t: _forward_seconds(MODELS[key][1], MODELS[key][2], t) for t in (1, 3, 6)} for key in ("c", "d")}
    print("forward s per 128 px window:", json.dumps(forward))
    large = generate_demo_series(work / "large", size=args.large, seed=args.seed, dates=6, progress=False)
    memory = {}
    for label, series in (("small", season), ("large", large)):
        for t in (1, 3, 6):
            bundle = results["a" if t == 1 else "c"]["bundle"]  # a series model refuses one date: T = 1 is (a)
            memory[(label, t)] = _predict_peak(bundle, list(series.scenes[:t]), work / f"map_{label}_{t}.tif")
            print(f"predict {label} T={t}: peak RSS {memory[(label, t)][0]:.0f} MB, {memory[(label, t)][1]:.1f} s",
                  flush=True)
    load_end, wall = os.getloadavg(), time.perf_counter() - wall_start
    _write(args, fractions, clearest, results, forward, memory, load_start, load_end, wall)
    shutil.rmtree(work, ignore_errors=True)


def _iou(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"  # None: the class is absent from the test split


def _write(args, fractions, clearest, results, forward, memory, load_start, load_end, wall) -> None:
    base = results["a"]
    lines = ["# Time series on the seasonal demo (`benchmarks/bench_series.py`)", "",
             f"Demo season seed {args.seed}, {args.size} x {args.size} px, 6 dates (valid fraction per date "
             + ", ".join(f"{f:.2f}" for f in fractions) + f"); (a) is trained on the clearest date ({clearest + 1}). "
             f"Same tiling (64 px cubes, split blocks of 2 x 2 cubes, split seed 1), same budget ({args.epochs} "
             "one-cycle epochs, batch 8, lr 2e-3, median-frequency class weights, seed 0); test-split scores of "
             "the best validation checkpoint. The single-date store drops the pixels cloudy on its date; the "
             "series store keeps a pixel valid on any date, so the test pixel counts differ slightly.", "",
             "| model | test mIoU | vs (a) | " + " | ".join(CLASSES) + " | test px | training s |",
             "|---|---|---|" + "---|" * len(CLASSES) + "---|---|"]
    for key, (label, _, _) in MODELS.items():
        r = results[key]
        cells = [_iou(r["iou"].get(n)) for n in CLASSES]
        lines.append(f"| {label} | {r['miou']:.3f} | {r['miou'] - base['miou']:+.3f} | " + " | ".join(cells)
                     + f" | {r['test_pixels']:,} | {r['train_s']:.0f} |")
    lines += ["", "Cropland / grassland IoU against (a): " + "; ".join(
        f"{MODELS[k][0][:3]} {results[k]['iou']['cropland'] - base['iou']['cropland']:+.3f} / "
        f"{results[k]['iou']['grassland'] - base['iou']['grassland']:+.3f}" for k in "bcd"), "",
        "## Cost against T", "",
        "Forward seconds per 128 x 128 px window (eval, batch 1, random weights), and the ratio to T = 1:", "",
        "| model | T = 1 | T = 3 | T = 6 |", "|---|---|---|---|"]
    for key in ("c", "d"):
        f = forward[key]
        lines.append(f"| {MODELS[key][0]} | " + " | ".join(f"{f[t]:.3f} s ({f[t] / f[1]:.1f}x)" for t in (1, 3, 6)) + " |")
    lines += ["", "Peak RSS of `geoseg predict` in a fresh subprocess (128 px windows, batch 4, torch) on the first "
              "T dates, and its wall time: T = 1 the single-date model (a) (a series model refuses one date), "
              "T = 3 and 6 the attention model (c) with `--series`:", "",
              "| scene | T = 1 | T = 3 | T = 6 |", "|---|---|---|---|"]
    for label, size in (("small", args.size), ("large", args.large)):
        lines.append(f"| {size} x {size} px | " + " | ".join(
            f"{memory[(label, t)][0]:.0f} MB, {memory[(label, t)][1]:.0f} s" for t in (1, 3, 6)) + " |")
    growth_small = memory[("small", 6)][0] - memory[("small", 1)][0]
    growth_large = memory[("large", 6)][0] - memory[("large", 1)][0]
    scene = memory[("large", 6)][0] - memory[("small", 6)][0]
    lines += ["", f"T = 1 → 6 adds {growth_small:.0f} MB on the small scene and {growth_large:.0f} MB on the "
              f"{(args.large / args.size) ** 2:.0f}x larger one; the larger scene adds {scene:.0f} MB at T = 6 "
              "(a 6-date float32 feature stack of the large scene would be "
              f"{6 * 24 * 4 * args.large ** 2 / 2 ** 20:.0f} MB).", "",
              f"Machine: {machine()}. The machine is shared: load average {load_start[0]:.1f} at the start, "
              f"{load_end[0]:.1f} at the end; absolute times are inflated, compare the same-run ratios. "
              f"Whole run {wall / 60:.1f} min.", ""]
    out = REPO / "docs" / "benchmarks_series.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
