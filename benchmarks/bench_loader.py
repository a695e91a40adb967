"""Loader benchmark: the default (24-channel) CubeStore vs the compact one (DN + mask), in one run.

A generated demo scene (default 2562 × 2562 px, 12 bands at 10/20/60 m + SCL) is tiled three
times (cubes 256 px, overlap 32): ``--store features`` (the default), ``--store compact`` (its
native layout: uint16 byte records) and ``--store compact`` in the fallback layout that scenes
without 16-bit DN get (float32 DN on the 10 m grid). Then, for each store, the training split goes through the trainer's own loader
(:class:`geoseg.data.CubeDataModule`: lazy zarr reads, ``--workers`` DataLoader worker
processes, batch ``--batch``, shuffled) and every batch is *delivered to the training step*:
its tensors are copied once into preallocated buffers in the main process (what a
``.to(device)`` or a pinned-memory copy does). Measured per form, after one warm-up epoch
(workers started, page cache warm), over ``--epochs`` epochs:

- cubes per second (wall) and cubes per CPU second (user + system time of the main process and
  of the loader workers, from psutil);
- the same with the on-device batch transform run on the CPU (``prepare_batch``: the compact
  form computes the 24 channels there, both forms normalise) — what training on a CPU pays, not
  what a GPU pays;
- bytes on disk per pixel: of the cube array per cube pixel, and of the whole store per scene
  pixel (overlap included).

Rounds alternate the order of the stores (ABC, CBA, ...), every run is listed, and the ratios use
the medians. The machine's load average is printed before and after: the development machine
is shared, so wall figures follow other jobs; CPU-second figures are the robust ones.
Results are printed and written to ``docs/benchmarks_loader.md``.

    python benchmarks/bench_loader.py [--size 2562] [--rounds 4] [--epochs 3] [--work /tmp/geoseg-bench]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _machine import machine  # noqa: E402

NOTES = [
    "What the columns mean: *loader* is what a GPU trainer's data pipeline costs the CPU (read the chunk "
    "and the label chunk in a worker, collate, pass the batch to the main process, one copy there); the "
    "compact store moves a uint16 byte record (native layout) or float32 DN instead of 24 float32 "
    "channels, and the per-cube costs that do not depend on the bytes (two zarr chunk reads, collate, "
    "inter-process hand-over) remain in both. *+ CPU batch transform* adds `prepare_batch` run on the "
    "CPU, as CPU-only training does: normalisation for both, and for the compact store the decoding "
    "of the records and the 24 channels (the recipe's compiled kernel on a CPU device; torch on a GPU, "
    "where this is a few arithmetic operations per pixel). Bytes per cube pixel count the cube array "
    "only; bytes per scene pixel count the whole store (labels, index, statistics) over the scene's "
    "pixels, with the overlap of neighbouring cubes.",
    "",
]
FORMS = ("features", "compact", "compact-grid")  # compact-grid: the fallback layout (float32 DN on the 10 m grid)


def _store(work: Path, size: int, form: str, cube: int, overlap: int) -> tuple[Path, float]:
    """The store of ``form`` (tiled once, reused later) and its tiling wall seconds (0 when reused)."""
    from geoseg.demo import DEMO_CLASSES, DemoScene, generate_demo_scene
    from geoseg.tiling import tile_dataset
    from geoseg.tiling.store import store_is_complete

    out = work / f"loader_{size}_{cube}_{overlap}_{form}"
    if store_is_complete(out):
        return out, 0.0
    root = work / f"demo_{size}"
    demo = DemoScene(root) if (root / "labels.tif").exists() else generate_demo_scene(root, size=size, seed=0,
                                                                                      progress=False)
    catalog = work / f"catalog_loader_{size}.yaml"
    catalog.write_text(yaml.safe_dump({"schema_version": 1, "datasets": {"bench": {
        "recipe": "s2_24", "ignore_codes": [0],
        "classes": [{"code": c, "name": n, "color": col} for c, n, col in DEMO_CLASSES],
        "scenes": [{"id": f"demo{size}", "path": str(demo.scene), "labels": {"raster": str(demo.labels)}}],
    }}}, sort_keys=False))
    import geoseg.tiling.plan as plan

    native = plan.plan_native_layout
    if form == "compact-grid":  # what scenes without 16-bit DN get
        plan.plan_native_layout = lambda *a: None  # type: ignore[assignment]
    start = time.perf_counter()
    try:
        tile_dataset(catalog, "bench", out, cube_size=cube, overlap=overlap, workers=2, progress=False,
                     overwrite=True, store=form.split("-")[0])
    finally:
        plan.plan_native_layout = native
    return out, time.perf_counter() - start


def _cpu(procs) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:  # a worker that has exited
            pass
    return total


def disk_bytes(store: Path) -> tuple[float, float]:
    """Bytes of the cube array per cube pixel, and of the whole store per scene pixel."""
    from geoseg.tiling import CubeStore
    from geoseg.tiling.compact import cube_array_name

    s = CubeStore.open(store)
    arr = store / "cubes.zarr" / cube_array_name(s.manifest)
    cube_bytes = sum(p.stat().st_size for p in arr.iterdir() if p.name.startswith("c."))
    total = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    scene_px = sum(int(v) for v in s.index.groupby("scene_id").apply(
        lambda g: (g["row_off"] + g["height"]).max() * (g["col_off"] + g["width"]).max()))
    return cube_bytes / (len(s) * s.cube_size**2), total / scene_px


def measure(store: Path, workers: int, batch: int, epochs: int, transform: bool) -> dict:
    """Cubes/s and cubes per CPU second of the training loader of ``store`` (one warm-up epoch first)."""
    import psutil
    import torch

    from geoseg.data import CubeDataModule

    dm = CubeDataModule(store, batch_size=batch, num_workers=workers, in_memory="no", augment=False)
    dm._dataset("train")  # the training split only (a small scene may have no validation cubes)
    loader = dm.train_dataloader()
    buffers: dict[str, torch.Tensor] = {}

    def deliver(b: dict[str, torch.Tensor]) -> int:
        if transform:
            b = dm.prepare_batch(b, train=False)
        for key, value in b.items():  # one copy of every byte, as a host-to-device transfer makes
            if key not in buffers or buffers[key].shape != value.shape:
                buffers[key] = torch.empty_like(value)
            buffers[key].copy_(value)
        return int(b["mask"].shape[0])

    for b in loader:  # warm-up: workers start, zarr opens, page cache fills
        deliver(b)
    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    cpu0, start, cubes = _cpu(procs), time.perf_counter(), 0
    for _ in range(epochs):
        for b in loader:
            cubes += deliver(b)
    wall, cpu = time.perf_counter() - start, _cpu(procs) - cpu0
    del loader
    return {"cubes": cubes, "wall": wall, "cpu": cpu, "per_s": cubes / wall, "per_cpu_s": cubes / cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2562)
    parser.add_argument("--cube", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/geoseg-bench"))
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks_loader.md")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    import torch

    from geoseg.utils.memory import keep_freed_memory

    keep_freed_memory()  # as geoseg train does before its loaders fork their workers
    torch.set_num_threads(1)  # the training process's own threads stay out of the loader figures
    load_before = os.getloadavg()
    print(f"load average before: {load_before}", flush=True)
    stores, tiling = {}, {}
    for form in FORMS:
        stores[form], tiling[form] = _store(args.work, args.size, form, args.cube, args.overlap)
        print(f"{form}: {stores[form]} (tiling {tiling[form]:.1f} s wall)", flush=True)
    from geoseg.tiling import CubeStore

    n_train = len(CubeStore.open(stores["features"]).ids("train"))
    disk = {form: disk_bytes(stores[form]) for form in FORMS}
    runs: dict[tuple[str, bool], list[dict]] = {(f, t): [] for f in FORMS for t in (False, True)}
    for r in range(args.rounds):
        order = FORMS if r % 2 == 0 else FORMS[::-1]  # alternate: ABC, CBA, ...
        for transform in (False, True):
            for form in order:
                m = measure(stores[form], args.workers, args.batch, args.epochs, transform)
                runs[(form, transform)].append(m)
                print(f"round {r + 1} {form:8s} {'+transform' if transform else 'loader    '} "
                      f"{m['per_s']:7.1f} cubes/s {m['per_cpu_s']:7.1f} cubes/CPU-s ({m['cubes']} cubes, "
                      f"{m['wall']:.1f} s, {m['cpu']:.1f} CPU s)", flush=True)
    load_after = os.getloadavg()
    print(f"load average after: {load_after}", flush=True)

    def med(form: str, transform: bool, key: str) -> float:
        return statistics.median(m[key] for m in runs[(form, transform)])

    lines = [
        "# Loader benchmark: default vs compact CubeStore",
        "",
        f"`python benchmarks/bench_loader.py --size {args.size} --rounds {args.rounds} --epochs {args.epochs}` — "
        f"demo scene {args.size} × {args.size} px tiled three times (cubes {args.cube} px, overlap {args.overlap}; "
        "`--store features`, the default; `--store compact` in its native layout; and `--store compact` in the "
        f"fallback layout of scenes without 16-bit DN); the {n_train} training cubes go through "
        f"`CubeDataModule`'s training loader (lazy zarr, {args.workers} worker processes, batch {args.batch}, "
        f"shuffled), {args.epochs} epochs per run after a warm-up epoch, and every batch is delivered to the "
        "training step (one copy of its tensors in the main process, as a host-to-device copy makes). "
        "CPU s = user + system time of the main process and the loader workers. Rounds alternate the "
        "order of the stores; figures are medians over the rounds, every run is listed below.",
        "",
        f"- {machine()}",
        f"- load average (1/5/15 min) before {'/'.join(f'{v:.1f}' for v in load_before)}, after "
        f"{'/'.join(f'{v:.1f}' for v in load_after)}: the machine is shared and was loaded by other jobs "
        f"(`nproc` {os.cpu_count()}), so wall figures are inflated and noisy; cubes per CPU second is the "
        "robust comparison.",
        "",
        "| store | cube array bytes / cube pixel | store bytes / scene pixel | loader cubes/s | loader cubes/CPU-s "
        "| + CPU batch transform: cubes/s | + CPU batch transform: cubes/CPU-s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    names = {"features": "features (default)", "compact": "compact (native layout: uint16 records)",
             "compact-grid": "compact, fallback layout (float32 DN on the 10 m grid)"}
    for form in FORMS:
        lines.append(f"| {names[form]} | {disk[form][0]:.1f} | {disk[form][1]:.1f} "
                     f"| {med(form, False, 'per_s'):.1f} | {med(form, False, 'per_cpu_s'):.1f} "
                     f"| {med(form, True, 'per_s'):.1f} | {med(form, True, 'per_cpu_s'):.1f} |")

    def ratio(key: str, transform: bool, form: str = "compact") -> float:
        return med(form, transform, key) / med("features", transform, key)

    per_cpu = ratio("per_cpu_s", False)
    lines += [
        "",
        "| compact / default | native layout | fallback layout | target |",
        "|---|---:|---:|---:|",
        f"| loader cubes per CPU second | {per_cpu:.2f} | {ratio('per_cpu_s', False, 'compact-grid'):.2f} "
        f"| ≥ 3 {'(met)' if per_cpu >= 3 else '(not met)'} |",
        f"| loader cubes per second (wall) | {ratio('per_s', False):.2f} | {ratio('per_s', False, 'compact-grid'):.2f} "
        "| (info) |",
        f"| bytes on disk per cube pixel: default / compact | {disk['features'][0] / disk['compact'][0]:.2f} "
        f"| {disk['features'][0] / disk['compact-grid'][0]:.2f} | (info) |",
        f"| with the batch transform on the CPU: cubes per CPU second | {ratio('per_cpu_s', True):.2f} "
        f"| {ratio('per_cpu_s', True, 'compact-grid'):.2f} | (info) |",
        "",
    ]
    if all(tiling[f] for f in FORMS):
        lines.append("Tiling in this run (2 workers, cluster start included; wall, for information): " + ", ".join(
            f"{f} {tiling[f]:.1f} s" for f in FORMS) + ".")
        lines.append("")
    lines += NOTES
    lines.append("Every run (cubes/s, cubes/CPU-s):")
    lines.append("")
    for (form, transform), ms in runs.items():
        lines.append(f"- {form}{' + CPU batch transform' if transform else ''}: " + ", ".join(
            f"{m['per_s']:.1f} / {m['per_cpu_s']:.1f}" for m in ms))
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
