"""Pipeline runner: a full run of a small pipeline vs. the up-to-date rerun, and per-step times.

The baseline is the full run measured in the same process; the figure of interest is what
the runner costs when nothing has to be done (fingerprinting scenes, reading manifests) and
how the steps share a run. Writes docs/benchmarks_pipeline.md.

    python benchmarks/bench_pipeline.py [--size 480] [--epochs 2] [--out docs/benchmarks_pipeline.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import machine  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=480, help="demo scene size (multiple of 6)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks_pipeline.md")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["GEOSEG_CACHE"] = str(root / "cache")
        import tests.pipeline._pipeline_helpers as helpers
        from tests.pipeline._pipeline_helpers import tiny_pipeline, write_catalog, write_pipeline

        helpers.DEMO_SIZE = args.size
        catalog = write_catalog(root / "catalog.yaml")
        pipeline = write_pipeline(root / "bench.yaml", tiny_pipeline(catalog, name="bench", train={"epochs": args.epochs}))
        from geoseg.pipeline import run_pipeline

        t0 = time.perf_counter()
        full = run_pipeline(pipeline, run_dir=root / "run", progress=False, echo=None)
        full_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = run_pipeline(pipeline, run_dir=root / "run", progress=False, echo=None)
        again_s = time.perf_counter() - t0
    assert again.skipped == full.ran
    rows = [(s.name, s.seconds) for s in full.steps]
    print(f"full run {full_s:.1f} s; up-to-date rerun {again_s:.2f} s; ratio {again_s / full_s:.4f}")
    for name, seconds in rows:
        print(f"  {name:<9} {seconds:7.1f} s")
    lines = [
        "# Pipeline runner benchmark",
        "",
        f"`python benchmarks/bench_pipeline.py --size {args.size} --epochs {args.epochs}`: the tiny pipeline "
        f"(tile → train UNet/test_resnet {args.epochs} epochs → evaluate → predict → export) on a "
        f"{args.size} × {args.size} px demo scene.",
        "",
        f"Machine: {machine()}; load average at the end {os.getloadavg()[0]:.1f}.",
        "",
        "| run | seconds | ratio to the full run |",
        "|---|---|---|",
        f"| full run (baseline) | {full_s:.1f} | 1 |",
        f"| rerun, every step up to date | {again_s:.2f} | {again_s / full_s:.4f} |",
        "",
        "| step (full run) | seconds |",
        "|---|---|",
        *[f"| {name} | {seconds:.1f} |" for name, seconds in rows],
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
