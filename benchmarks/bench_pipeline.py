"""Benchmark ``geoseg run``: the shipped demo pipeline, and the runner's own cost.

Part 1 (``demo``): ``pipelines/demo.yaml`` as shipped — the README's first command — against
the demo configuration it replaced (UNet/ResNet-18 with the full decoder, 20 epochs, cosine
schedule, prediction in the model's 64 px windows), both measured in this run, each from an
empty cache (the demo scene is generated as on a fresh machine). Per step: wall seconds and
CPU seconds (this process and its finished children, i.e. the tiling workers); val and test
mIoU.

Part 2 (``runner``): the tiny test pipeline (324 px scene, tiny encoder, 2 epochs): a full run
against the up-to-date rerun (fingerprinting scenes and code, reading manifests).

    python benchmarks/bench_pipeline.py                    # both parts
    python benchmarks/bench_pipeline.py --part demo
    python benchmarks/bench_pipeline.py --part runner --size 480

Writes docs/benchmarks_pipeline.md (tables + machine + load average); prints every figure.
Run it without ``nice`` on an idle machine for the wall times that matter.
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._machine import machine  # noqa: E402

STEPS = ("tile", "train", "evaluate", "predict", "export")
# the demo pipeline's train and predict steps before this configuration (commit 9ee8b08)
BASELINE = {
    "train": {"model": "unet", "encoder": "resnet18", "pretrained": False, "epochs": 20, "batch_size": 8,
              "lr": 0.002, "class_weights": "auto", "seed": 0},
    "predict": {"confidence": True},
}


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed_run(pipeline: Path, run_dir: Path) -> dict[str, Any]:
    """Run a pipeline; wall and CPU seconds per step (the scene fingerprint of tile included) and in all."""
    import geoseg.pipeline.runner as runner

    times: dict[str, tuple[float, float]] = {}
    original = runner._run_step

    def timed(name: str, *args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), _cpu()
        result = original(name, *args, **kwargs)
        times[name] = (time.perf_counter() - wall, _cpu() - cpu)
        return result

    runner._run_step = timed
    try:
        wall, cpu = time.perf_counter(), _cpu()
        result = runner.run_pipeline(pipeline, run_dir=run_dir, progress=False, echo=None)
        total = (time.perf_counter() - wall, _cpu() - cpu)
    finally:
        runner._run_step = original
    return {"result": result, "steps": times, "total": total}


def demo_part(root: Path) -> list[str]:
    shipped = yaml.safe_load((REPO / "pipelines" / "demo.yaml").read_text())
    shipped["catalog"] = str(REPO / "data_catalog.yaml")
    baseline = copy.deepcopy(shipped)
    baseline["steps"].update(copy.deepcopy(BASELINE))
    runs = {}
    for name, data in (("shipped demo.yaml", shipped), ("previous demo configuration (baseline)", baseline)):
        os.environ["GEOSEG_CACHE"] = str(root / name.split()[0] / "cache")  # a fresh machine for each
        path = root / f"{name.split()[0]}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        runs[name] = _timed_run(path, root / name.split()[0] / "run")
        r = runs[name]
        train, ev = r["result"].step("train").outputs, r["result"].step("evaluate").outputs
        print(f"{name}: {r['total'][0]:.1f} s wall, {r['total'][1]:.1f} s CPU; val mIoU {train['best_score']:.3f} "
              f"(epoch {train['best_epoch']}/{train['epochs']}), test mIoU {ev['miou']:.3f}", flush=True)
        for step in STEPS:
            print(f"  {step:<9} {r['steps'][step][0]:7.1f} s wall {r['steps'][step][1]:7.1f} s CPU", flush=True)
    new, old = runs.values()
    ratio = new["total"][0] / old["total"][0]
    print(f"ratio shipped / baseline (wall): {ratio:.2f}")
    header = "| step | " + " | ".join(f"{n} wall s (CPU s)" for n in runs) + " | ratio (wall) |"
    lines = [
        "## The demo pipeline (`geoseg run pipelines/demo.yaml`)",
        "",
        "Shipped configuration: UNet, ResNet-18 encoder to depth 4 with decoder channels 128-64-32-16, "
        f"{new['result'].step('train').outputs['epochs']} epochs with a one-cycle schedule, prediction in 256 px "
        "windows. Baseline: the configuration it replaced (full ResNet-18 UNet, 20 epochs, cosine, 64 px "
        "prediction windows), measured in the same run. Each run starts from an empty cache (the demo scene "
        "is generated inside the tile step's fingerprinting, counted under tile).",
        "",
        header,
        "|---|" + "---|" * (len(runs) + 1),
    ]
    for step in STEPS:
        cells = [f"{r['steps'][step][0]:.1f} ({r['steps'][step][1]:.1f})" for r in runs.values()]
        lines.append(f"| {step} | {' | '.join(cells)} | {new['steps'][step][0] / old['steps'][step][0]:.2f} |")
    cells = [f"**{r['total'][0]:.1f}** ({r['total'][1]:.1f})" for r in runs.values()]
    lines.append(f"| **whole run** | {' | '.join(cells)} | **{ratio:.2f}** |")
    for label, key, step in (("val mIoU (best epoch)", "best_score", "train"), ("test mIoU", "miou", "evaluate")):
        lines.append(f"| {label} | " + " | ".join(f"{r['result'].step(step).outputs[key]:.3f}" for r in runs.values())
                     + " | |")
    return [*lines, ""]


def runner_part(root: Path, size: int, epochs: int) -> list[str]:
    os.environ["GEOSEG_CACHE"] = str(root / "runner-cache")
    import tests.pipeline._pipeline_helpers as helpers
    from tests.pipeline._pipeline_helpers import tiny_pipeline, write_catalog, write_pipeline

    helpers.DEMO_SIZE = size
    (root / "runner").mkdir()
    catalog = write_catalog(root / "runner" / "catalog.yaml")
    pipeline = write_pipeline(root / "runner" / "bench.yaml", tiny_pipeline(catalog, name="bench",
                                                                             train={"epochs": epochs}))
    full = _timed_run(pipeline, root / "runner" / "run")
    again = _timed_run(pipeline, root / "runner" / "run")
    assert again["result"].skipped == full["result"].ran
    full_s, again_s = full["total"][0], again["total"][0]
    print(f"tiny pipeline: full run {full_s:.1f} s; up-to-date rerun {again_s:.2f} s; ratio {again_s / full_s:.4f}")
    return [
        "## The runner's own cost",
        "",
        f"The tiny pipeline (tile → train UNet/test_resnet {epochs} epochs → evaluate → predict → export) on a "
        f"{size} × {size} px demo scene, then the same command again (every step up to date: scene and code "
        "fingerprints, manifests).",
        "",
        "| run | seconds | ratio to the full run |",
        "|---|---|---|",
        f"| full run (baseline) | {full_s:.1f} | 1 |",
        f"| rerun, every step up to date | {again_s:.2f} | {again_s / full_s:.4f} |",
        "",
        "| step (full run) | wall s | CPU s |",
        "|---|---|---|",
        *[f"| {s} | {full['steps'][s][0]:.1f} | {full['steps'][s][1]:.1f} |" for s in STEPS],
        "",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=["all", "demo", "runner"], default="all")
    p.add_argument("--size", type=int, default=324, help="runner part: demo scene size (multiple of 6)")
    p.add_argument("--epochs", type=int, default=2, help="runner part: training epochs")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks_pipeline.md")
    args = p.parse_args()
    load_start = os.getloadavg()[0]
    sections: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("all", "demo"):
            sections += demo_part(Path(tmp))
        if args.part in ("all", "runner"):
            sections += runner_part(Path(tmp), args.size, args.epochs)
    load_end = os.getloadavg()[0]
    command = "python benchmarks/bench_pipeline.py" + ("" if args.part == "all" else f" --part {args.part}")
    lines = [
        "# Pipeline benchmark",
        "",
        f"`{command}`. Machine: {machine()}; load average (1 min) {load_start:.1f} at the start, "
        f"{load_end:.1f} at the end (the machine is shared: other engineers' tests and benchmarks run beside it).",
        "",
        *sections,
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
