"""Streaming prediction against the bare model and against a naive in-memory predictor.

    python benchmarks/bench_predict.py [--size 4098] [--no-half] [--repeat 2] [--encoder resnet18]
                                       [--engine auto] [--model MODEL_DIR] [--torch-threads N]
                                       [--cache /tmp/geoseg-bench] [--out docs/benchmarks_predict.md]

On one generated demo scene (per-band files at 10/20/60 m, SCL clouds; sizes are multiples of 6,
so 4098 stands for 4096 and ``--size 10980`` gives a full tile) and one model: ``--arch`` /
``--encoder`` with random weights (window 256), or a trained bundle (``--model``, e.g. from
``geoseg train`` on the demo cubes; window as ``geoseg predict`` plans it). The cost of torch and
onnxruntime does not depend on the weights; ``--engine auto`` does: it runs bfloat16 only when
the bfloat16 map agrees with float32's, which random weights (near-tied classes) fail:

(a) the bare model forward over the same windows, batches already in memory (``model(x)``; as
    many windows as (b) sent through the model — (b) skips windows without a valid pixel);
(b) ``geoseg predict`` end to end: reading, features, normalisation, forward, softmax, blending,
    the COG with overviews and its sidecars;
(c) a naive in-memory predictor, as raster-vision, terratorch and geoai do it: the whole
    scene's features in memory, full-size score/weight accumulators, argmax, one GTiff write.

(b) and (a) alternate ``--repeat`` times in one subprocess, so that both see the same load on a
shared machine (wall and process-CPU seconds are reported); the peak RSS of (b) is read after its
first run, before (a) ran in that process. (c) runs in its own subprocess. Unless ``--no-half``,
(b) and (c) also run on a scene of half the side, to show how peak RSS scales with the area.
Demo scenes already generated in ``--cache`` (``demo_<size>/``) are reused read-only; missing ones
are generated in the work folder. The table records the load average before and after the run.
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

WINDOW, CLASSES = 256, 6


# ----------------------------------------------------------------------------- workers (subprocesses)
class _Clock:
    """Wall-clock and process CPU seconds (all threads) of a block."""

    def __enter__(self) -> _Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def _bare(scene_path: str, bundle_dir: str, batch: int, count: int | None) -> dict:
    import numpy as np
    import torch

    from geoseg.bundle import ModelRunner
    from geoseg.features import read_features
    from geoseg.io import open_scene
    from geoseg.predict import load_model_bundle, plan_windows

    bundle = load_model_bundle(bundle_dir)
    scene = open_scene(scene_path)
    layout = plan_windows(scene, bundle)
    runner = ModelRunner(bundle, device="cpu")
    recipe = bundle.config.recipe
    windows = list(layout)
    window, overlap = layout.window_height, layout.overlap
    inputs = [runner.prepare(np.stack([read_features(scene, w, recipe)[0] for w in windows[i : i + batch]]))
              for i in (0, batch) if i < len(windows)]  # two real batches, already normalised, in memory
    count = len(windows) if count is None else count  # (b) skips windows without a valid pixel
    sizes = [min(batch, count - i) for i in range(0, count, batch)]
    model = runner.model
    with torch.inference_mode():
        model(inputs[0][:1])  # warm-up
        with _Clock() as clock:
            for j, n in enumerate(sizes):
                model(inputs[j % len(inputs)][:n])
    return {"seconds": clock.wall, "cpu": clock.cpu, "windows": count, "peak_mb": peak_rss_mb(), "window": window,
            "overlap": overlap}


def _geoseg(scene_path: str, bundle_dir: str, batch: int, out: str, engine: str = "auto") -> dict:
    from geoseg.predict import predict_scene

    with _Clock() as clock:
        s = predict_scene(scene_path, bundle_dir, out, batch_size=batch, device="cpu", progress=False, engine=engine)
    return {"seconds": clock.wall, "cpu": clock.cpu, "windows": s.windows_run, "model_seconds": s.model_seconds,
            "peak_mb": peak_rss_mb(), "accumulator_mb": s.extra["accumulator_bytes"] / 2**20, "engine": s.engine,
            "engine_reason": s.engine_reason}


def _paired(scene_path: str, bundle_dir: str, batch: int, out: str, repeat: int, engine: str) -> dict:
    """(b) then (a), ``repeat`` times in one process: both see the same machine load."""
    runs: dict[str, list[dict]] = {"geoseg": [], "bare": []}
    for i in range(repeat):
        runs["geoseg"].append(_geoseg(scene_path, bundle_dir, batch, out, engine))
        if i == 0:
            runs["geoseg"][0]["peak_mb"] = peak_rss_mb()  # before (a) ran in this process
        runs["bare"].append(_bare(scene_path, bundle_dir, batch, runs["geoseg"][-1]["windows"]))
    return runs


def _naive(scene_path: str, bundle_dir: str, batch: int, out: str) -> dict:
    import numpy as np
    import rasterio
    import torch
    from rasterio.windows import Window

    from geoseg.bundle import normalize
    from geoseg.features import read_features
    from geoseg.io import open_scene
    from geoseg.predict import load_model_bundle, plan_windows

    start, cpu = time.perf_counter(), time.process_time()
    bundle = load_model_bundle(bundle_dir)
    scene = open_scene(scene_path)
    layout = plan_windows(scene, bundle)
    h, w = scene.grid.shape
    feats, valid = read_features(scene, Window(0, 0, w, h), bundle.config.recipe)  # whole scene
    x = normalize(torch.from_numpy(feats), bundle.config.normalization, bundle.config.mask_channels)
    del feats
    scores = np.zeros((CLASSES, h, w), np.float32)  # full-size accumulators
    weight = np.zeros((h, w), np.float32)
    windows = list(layout)
    with torch.inference_mode():
        for i in range(0, len(windows), batch):
            group = windows[i : i + batch]
            xb = torch.stack([x[:, int(v.row_off) : int(v.row_off + v.height), int(v.col_off) : int(v.col_off + v.width)]
                              for v in group])
            probs = torch.softmax(bundle.model(xb), dim=1).numpy()
            for v, p in zip(group, probs, strict=True):
                r, c, wt = int(v.row_off), int(v.col_off), layout.weights(v)
                scores[:, r : r + v.height, c : c + v.width] += p * wt
                weight[r : r + v.height, c : c + v.width] += wt
    codes = bundle.codes[np.argmax(scores / weight, axis=0)]
    codes[~valid] = 0
    profile = {"driver": "GTiff", "width": w, "height": h, "count": 1, "dtype": "uint8", "crs": scene.grid.crs,
               "transform": scene.grid.affine, "nodata": 0, "tiled": True, "compress": "deflate"}
    with rasterio.open(out, "w", **profile) as ds:
        ds.write(codes, 1)
    return {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu, "windows": len(windows),
            "peak_mb": peak_rss_mb()}


def _worker(args: argparse.Namespace) -> None:
    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if args.ignore_agreement:  # speed only: random weights fail the bfloat16 map check (near-tied classes)
        from geoseg.bundle import runner

        runner.PROBE_AGREEMENT = runner.BF16_AGREEMENT = 0.0
    if args.worker == "paired":
        result = _paired(args.scene, args.bundle, args.batch_size, args.result, args.repeat, args.engine)
    elif args.worker == "geoseg":
        result = _geoseg(args.scene, args.bundle, args.batch_size, args.result, args.engine)
    else:
        result = _naive(args.scene, args.bundle, args.batch_size, args.result)
    print(json.dumps(result))


# ----------------------------------------------------------------------------- driver
def _run(mode: str, scene: Path, bundle: Path, work: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--scene", str(scene), "--bundle", str(bundle),
           "--batch-size", str(args.batch_size), "--result", str(work / f"{mode}_{scene.parent.name}.tif"),
           "--repeat", str(max(1, args.repeat)), "--engine", args.engine, "--arch", args.arch]
    if args.torch_threads:
        cmd += ["--torch-threads", str(args.torch_threads)]
    if args.ignore_agreement:
        cmd += ["--ignore-agreement"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, runs in (result.items() if mode == "paired" else [(mode, [result])]):
        for r in runs:
            print(f"  {name:<7} {scene.parent.name}: {r['seconds']:.1f} s wall, {r['cpu']:.1f} s CPU, "
                  f"{r['windows']} windows, peak RSS {r['peak_mb']:.0f} MB", flush=True)
    return result


def _bundle(work: Path, arch: str, encoder: str, window: int = WINDOW, name: str = "bundle") -> Path:
    """A random-weight bundle of ``arch``/``encoder`` trained (nominally) on ``window`` px (also bench_predict_window)."""
    from geoseg.bundle import BundleConfig, Normalization, save_bundle
    from geoseg.config.catalog import ClassDef
    from geoseg.demo.classes import DEMO_CLASSES
    from geoseg.features import get_recipe
    from geoseg.models import create_model

    recipe = get_recipe("s2_24")
    model = create_model(arch, in_channels=24, num_classes=CLASSES, encoder=encoder,
                         channel_names=list(recipe.channel_names))
    config = BundleConfig(
        model=model.spec, recipe=recipe.to_dict(), channel_names=list(recipe.channel_names),
        classes=[ClassDef(code=c, name=n, color=col) for c, n, col in DEMO_CLASSES],
        normalization=Normalization(mean=[0.15] * 24, std=[0.1] * 24), window=window,
    )
    return save_bundle(model.eval(), config, work / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4098, help="scene side in pixels (multiple of 6)")
    parser.add_argument("--no-half", dest="half", action="store_false", help="skip the half-size runs")
    parser.add_argument("--arch", default="unet", help="architecture (e.g. rsprunetpp with --encoder resnest14d)")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--model", type=Path, default=None,
                        help="a trained model bundle instead of random weights of --arch/--encoder")
    parser.add_argument("--engine", default="auto", choices=["auto", "torch", "torch-bf16", "onnxruntime"],
                        help="(b)'s inference engine; (a) is always torch eager")
    parser.add_argument("--ignore-agreement", action="store_true",
                        help="speed only: run torch-bf16 even where its map differs from float32's (random weights)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--torch-threads", type=int, default=0, help="torch threads in every run (0: torch default)")
    parser.add_argument("--skip-naive", action="store_true", help="skip (c) (it needs ~100 B/px of RAM)")
    parser.add_argument("--work", type=Path, default=None, help="folder for scenes and outputs (default: a temp dir)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/geoseg-bench"),
                        help="reuse the demo scenes <cache>/demo_<size> found here (read-only)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks_predict.md")
    parser.add_argument("--worker", choices=["paired", "geoseg", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=2,
                        help="alternate (b) and (a) this many times in one process (load drifts)")
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return

    tmp = tempfile.TemporaryDirectory(prefix="geoseg-bench-predict-") if args.work is None else None
    work = Path(tmp.name) if tmp else args.work
    work.mkdir(parents=True, exist_ok=True)
    sizes = [args.size] + ([args.size // 12 * 6] if args.half else [])
    scenes = {}
    load_before = os.getloadavg()
    for size in sizes:
        scenes[size] = demo_scene(args.cache, work, size)
    if args.model is not None:
        from geoseg.predict import load_model_bundle

        loaded = load_model_bundle(args.model)  # a training run's folder: its best/
        bundle, spec = loaded.path, loaded.config.model
        args.arch, args.encoder, args.weights = spec.name, spec.encoder, f"trained: {args.model}"
    else:
        bundle, args.weights = _bundle(work, args.arch, args.encoder), "random weights"
    results: dict[tuple[str, int], list[dict]] = {}
    skipped: dict[int, int] = {}  # size -> bytes (c) would need
    print(f"model: {args.arch}/{args.encoder} ({args.weights}), engine {args.engine}, batch {args.batch_size}")
    paired = _run("paired", scenes[args.size], bundle, work, args)
    results[("bare", args.size)], results[("geoseg", args.size)] = paired["bare"], paired["geoseg"]
    for size in sizes:
        if size != args.size:
            results[("geoseg", size)] = [_run("geoseg", scenes[size], bundle, work, args)]
        if not args.skip_naive:
            need, free = _naive_bytes(size), _available_bytes()
            if free is not None and need > 0.8 * free:
                print(f"  naive   demo_{size}: skipped, needs ~{need / 2**30:.1f} GB, {free / 2**30:.1f} GB available")
                skipped[size] = need
            else:
                results[("naive", size)] = [_run("naive", scenes[size], bundle, work, args)]
    table = _table(results, args, sizes, (load_before, os.getloadavg()), skipped)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table + "\n")
    if tmp:
        tmp.cleanup()


def _mean(runs: list[dict], key: str) -> float:
    return sum(r[key] for r in runs) / len(runs)


def _naive_bytes(size: int) -> int:
    """RAM (c) needs: raw + normalised features (2 × 24 float32), K + 1 float32 accumulators, masks."""
    return size * size * (2 * 24 * 4 + (CLASSES + 1) * 4 + 4)


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _table(results: dict, args: argparse.Namespace, sizes: list[int], load: tuple[tuple[float, ...], ...],
           skipped: dict[int, int]) -> str:
    size = args.size
    a, a_cpu = _mean(results[("bare", size)], "seconds"), _mean(results[("bare", size)], "cpu")
    b, b_cpu = _mean(results[("geoseg", size)], "seconds"), _mean(results[("geoseg", size)], "cpu")
    names = {"bare": "(a) bare model forward, batches in memory",
             "geoseg": "(b) geoseg predict end to end (features, blending, COG + sidecars)",
             "naive": "(c) naive in-memory predictor (whole scene + full-size accumulators)"}
    threads = args.torch_threads or "torch default"
    window, overlap = results[("bare", size)][0]["window"], results[("bare", size)][0]["overlap"]
    lines = [
        "## Streaming prediction",
        "",
        f"Demo scene(s) (per-band 10/20/60 m files), model {args.arch}/{args.encoder} ({args.weights}"
        f"{'; bfloat16 map check off: speed only' if args.ignore_agreement else ''}), "
        f"(b) with `--engine {args.engine}` (ran: {results[('geoseg', size)][0].get('engine', 'torch')}), window "
        f"{window}, overlap {overlap}, batch {args.batch_size}, CPU, torch threads: {threads}. "
        f"(b) and (a) alternate {max(1, args.repeat)}× in one process on the {size}² scene, so both see the same "
        "machine load (mean shown, every run listed); (a) runs as many windows as (b) sent through the model. "
        "CPU = process CPU seconds, all threads.",
        f"Machine: {machine()}; load average (1/5/15 min) before the run "
        f"{'/'.join(f'{v:.1f}' for v in load[0])}, after {'/'.join(f'{v:.1f}' for v in load[1])}.",
        "",
        "| run | scene | windows | wall s (mean) | every run (wall s) | CPU s | wall vs (a) | CPU vs (a) | peak RSS (MB) |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for mode in ("bare", "geoseg", "naive"):
        for s in sizes:
            runs = results.get((mode, s))
            if not runs:
                continue
            t, cpu = _mean(runs, "seconds"), _mean(runs, "cpu")
            every = ", ".join(f"{r['seconds']:.1f}" for r in runs)
            vs = (f"{t / a:.2f}x", f"{cpu / a_cpu:.2f}x") if s == size else ("–", "–")
            # the peak only grows: the first run's is (b)'s own; (a) shares (b)'s process
            peak_cell = "(in (b)'s process)" if mode == "bare" else f"{runs[0]['peak_mb']:.0f}"
            lines.append(f"| {names[mode]} | {s} x {s} | {runs[0]['windows']} | {t:.1f} | {every} | {cpu:.1f} | "
                         f"{vs[0]} | {vs[1]} | {peak_cell} |")
    for s, need in skipped.items():
        lines.append(f"| {names['naive']} | {s} x {s} | – | skipped: needs ~{need / 2**30:.0f} GB of RAM | | | | | |")
    model_s = _mean(results[("geoseg", size)], "model_seconds")
    acc = results[("geoseg", size)][0]["accumulator_mb"]
    target = "≤ 0.6 with `--engine auto` on a CPU" if args.engine == "auto" else "≤ 1.10 with torch"
    reason = results[("geoseg", size)][0].get("engine_reason", "")
    lines += ["", f"- (b)/(a) = **{b / a:.3f}** wall, **{b_cpu / a_cpu:.3f}** CPU (target {target}); time inside the "
                  f"model during (b): {model_s:.1f} s of {b:.1f} s; stitcher accumulators: {acc:.0f} MB.",
              f"- engine of (b): {results[('geoseg', size)][0].get('engine', 'torch')} — {reason}."]
    if len(sizes) > 1:
        small = sizes[1]

        def peak(mode: str, s: int) -> float:
            return results[(mode, s)][0]["peak_mb"]  # the first run, before (a) ran in its process

        line = f"- Peak RSS {size}² / {small}² (4× the pixels): (b) **{peak('geoseg', size) / peak('geoseg', small):.2f}x**"
        if ("naive", small) in results and ("naive", size) in results:
            line += f", (c) **{peak('naive', size) / peak('naive', small):.2f}x**"
        lines.append(line + ".")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
