"""Benchmark of the tiler: geoseg tile vs a plain rasterio read and torchgeo chip extraction.

On a generated demo scene (default 4098 × 4098 px, ``--size 10980`` for a full tile), in one
run:

(a) a plain single-threaded rasterio windowed read of the bands the s2_24 recipe uses (+ SCL),
    block by block at their native resolutions — reading only, nothing computed or written;
(b) torchgeo ``RasterDataset`` + ``GridGeoSampler`` extracting the same chips (cube size and
    stride; bands resampled onto the 10 m grid by torchgeo), held in memory, not written;
(c) ``geoseg.tiling.tile_dataset`` with 1 and with 2 worker processes (reading, resampling,
    masking, 13 indices, labels, statistics and writing the CubeStore included);
(c') the same with 2 workers on the two-step feature path (numpy resampling and masking, then
    the index kernel: the path before the fused kernel), for the gain of the fused kernel;
(c-compact) 2 workers writing the compact store (``--store compact``: 16-bit DN at each band's
    resolution + the valid mask, ~12 B/px instead of 96; the channels are computed later in
    the batch transform);
(d) the output floor: plain single-threaded writes of exactly the cube and label bytes (c)
    wrote — what any tiler producing this store must at least spend.

Throughput is scene megapixels per second of wall time; every measurement is the fastest of
``--repeats`` alternating rounds of (a)-(d) (a VM's first writes into fresh memory can cost
several times more; alternating, a loaded machine disturbs every method alike). Cluster start-up and the per-worker
warm-up (imports, numba compilation of the recipe kernel) happen before the clock and are
reported separately. Peak RSS of each geoseg worker is measured at two scene
sizes to show that it does not grow with the scene. Results are printed and written as a
markdown table to ``docs/benchmarks_tiler.md``.

    python benchmarks/bench_tiler.py [--size 4098] [--repeats 3] [--work /tmp/geoseg-bench]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
import yaml

REPO = Path(__file__).resolve().parents[1]


def _scene(work: Path, size: int):
    from geoseg.demo import DemoScene, generate_demo_scene

    root = work / f"demo_{size}"
    if (root / "labels.tif").exists():
        return DemoScene(root)
    print(f"generating a {size} x {size} demo scene in {root} ...", flush=True)
    return generate_demo_scene(root, size=size, seed=0, progress=False)


def _catalog(work: Path, demo, size: int) -> Path:
    from geoseg.demo import DEMO_CLASSES

    path = work / f"catalog_{size}.yaml"
    data = {"schema_version": 1, "datasets": {"bench": {
        "recipe": "s2_24", "ignore_codes": [0],
        "classes": [{"code": c, "name": n, "color": col} for c, n, col in DEMO_CLASSES],
        "scenes": [{"id": f"demo{size}", "path": str(demo.scene), "labels": {"raster": str(demo.labels)}}],
    }}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def plain_read(demo) -> tuple[float, float]:
    """(a) wall and CPU seconds of a single-threaded windowed read of the recipe's bands and SCL."""
    from geoseg.features import get_recipe
    from geoseg.io import open_scene

    scene = open_scene(demo.scene)
    files = [scene.bands[b].path for b in get_recipe("s2_24").required_bands] + [scene.scl.path]
    start, cpu = time.perf_counter(), time.process_time()
    with rasterio.Env(GDAL_NUM_THREADS=1):
        for path in files:
            with rasterio.open(path) as ds:
                for _, window in ds.block_windows(1):
                    ds.read(1, window=window)
    return time.perf_counter() - start, time.process_time() - cpu


def torchgeo_chips(demo, work: Path, size: int, cube: int, stride: int, limit: int | None
                   ) -> tuple[float, float, int, int]:
    """(b) wall and CPU seconds for ``limit`` chips (or all), chips done, chips in the grid."""
    from torchgeo.datasets import RasterDataset
    from torchgeo.samplers import GridGeoSampler

    from geoseg.features import get_recipe

    bands = list(get_recipe("s2_24").required_bands)
    links = work / f"torchgeo_{size}"
    links.mkdir(exist_ok=True)
    for path in demo.scene.glob("*.tif"):  # torchgeo swaps the band token: drop the _10m/_20m suffix
        stem = path.stem.rsplit("_", 1)[0]
        link = links / f"{stem}.tif"
        if not link.exists():
            link.symlink_to(path)

    class DemoS2(RasterDataset):
        filename_glob = "T33UUU_*_B02.tif"
        filename_regex = r"^T33UUU_(?P<date>\d{8}T\d{6})_(?P<band>B[0-9A]{2})\.tif$"
        date_format = "%Y%m%dT%H%M%S"
        is_image = True
        separate_files = True
        all_bands = tuple(bands)

    start, cpu = time.perf_counter(), time.process_time()
    dataset = DemoS2(paths=links, res=10.0, bands=bands)
    sampler = GridGeoSampler(dataset, size=cube, stride=stride)
    total = len(sampler)
    done = 0
    for query in sampler:
        sample = dataset[query]
        assert sample["image"].shape[0] == len(bands)
        done += 1
        if limit is not None and done >= limit:
            break
    return time.perf_counter() - start, time.process_time() - cpu, done, total


def _warm_up(scene_path: str) -> None:
    """Import geoseg and compile the recipe kernel (numba) in a worker process."""
    from rasterio.windows import Window

    from geoseg.features import read_features
    from geoseg.io import open_scene
    from geoseg.tiling.worker import GDAL_WORKER_ENV

    with rasterio.Env(**GDAL_WORKER_ENV):  # as in a tiling task (GDAL reads its cache size once)
        read_features(open_scene(scene_path), Window(0, 0, 16, 16), "s2_24")


def _fused(enabled: bool) -> None:
    """In a worker: use the fused feature kernel (default) or the two-step path (numpy resampling + index kernel)."""
    from geoseg.features import fused, stack

    stack.compile_fused_kernel = fused.compile_fused_kernel if enabled else (lambda recipe: None)


def geoseg_tile(client, catalog: Path, out: Path, cube: int, overlap: int, fused: bool = True,
                store: str = "features") -> tuple[float, float, float]:
    """(c) one run on ``client``: wall s, tiling s, CPU s (workers + client)."""
    from geoseg.tiling import tile_dataset

    client.run(_fused, fused)
    shutil.rmtree(out, ignore_errors=True)
    cpu0 = sum(client.run(time.process_time).values()) + time.process_time()
    start = time.perf_counter()
    summary = tile_dataset(catalog, "bench", out, cube_size=cube, overlap=overlap, client=client, progress=False,
                           store=store)
    wall = time.perf_counter() - start
    cpu = sum(client.run(time.process_time).values()) + time.process_time() - cpu0
    client.run(_fused, True)
    return wall, summary.tiling_seconds, cpu


def _cluster(stack: contextlib.ExitStack, workers: int, scene: Path):
    """A local cluster of ``workers`` processes, warmed up; returns (client, warm-up s)."""
    from geoseg.tiling.tiler import local_cluster

    client = stack.enter_context(local_cluster(workers))  # the cluster tile_dataset starts by default
    warm = time.perf_counter()
    client.run(_warm_up, str(scene))
    return client, time.perf_counter() - warm


def _peaks(client) -> list[int]:
    from _machine import peak_rss_mb

    return sorted(round(v) for v in client.run(peak_rss_mb).values())


def _machine() -> list[str]:
    import dask
    import distributed
    import torchgeo
    import zarr
    from _machine import machine

    import geoseg

    return [
        f"- {machine()}",
        f"- dask {dask.__version__}, distributed {distributed.__version__}, zarr {zarr.__version__}, "
        f"torchgeo {torchgeo.__version__}, geoseg {geoseg.__version__}",
    ]


def write_floor(store: Path, work: Path) -> tuple[float, float, float]:
    """(d) wall s, CPU s and GB of writing the store's cube and label bytes with plain writes, 1 thread."""
    import zarr

    group = zarr.open_group(str(store / "cubes.zarr"), mode="r")
    cube = np.ascontiguousarray(group["cubes"][0])
    label = np.ascontiguousarray(group["labels"][0])
    n = group["cubes"].shape[0]
    folder = work / "write_floor"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        for name, block in (("c", cube), ("l", label)):
            with open(folder / f"{name}{i}", "wb") as fh:
                fh.write(memoryview(block).cast("B"))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    shutil.rmtree(folder)
    return wall, cpu, n * (cube.nbytes + label.nbytes) / 1e9


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4098, help="scene size (multiple of 6; 10980 = full tile)")
    parser.add_argument("--small", type=int, default=2046, help="smaller scene for the memory comparison")
    parser.add_argument("--cube-size", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--torchgeo-chips", type=int, default=80,
                        help="chips timed for torchgeo (0 = all); throughput is extrapolated to the grid")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement; the fastest is reported")
    parser.add_argument("--work", type=Path, default=Path("/tmp/geoseg-bench"))
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks_tiler.md")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    machine = _machine()
    stride = args.cube_size - args.overlap

    demo = _scene(args.work, args.size)
    small = _scene(args.work, args.small)
    catalog, small_catalog = _catalog(args.work, demo, args.size), _catalog(args.work, small, args.small)
    mpx = args.size * args.size / 1e6
    print(f"scene {args.size} x {args.size} ({mpx:.1f} Mpx); cubes {args.cube_size}, overlap {args.overlap}")

    load_start = os.getloadavg()
    runs: dict[str, list[tuple]] = {k: [] for k in ("plain", "torchgeo", "one", "two", "two_old", "compact", "write")}
    with contextlib.ExitStack() as stack:
        c1, warm1 = _cluster(stack, 1, demo.scene)
        c2, warm2 = _cluster(stack, 2, demo.scene)
        for r in range(args.repeats):  # alternating rounds: a loaded machine disturbs every method alike
            runs["plain"].append(plain_read(demo))
            runs["torchgeo"].append(torchgeo_chips(demo, args.work, args.size, args.cube_size, stride,
                                                   args.torchgeo_chips or None))
            runs["one"].append(geoseg_tile(c1, catalog, args.work / "store_1", args.cube_size, args.overlap))
            runs["two"].append(geoseg_tile(c2, catalog, args.work / "store_2", args.cube_size, args.overlap))
            runs["two_old"].append(geoseg_tile(c2, catalog, args.work / "store_old", args.cube_size, args.overlap,
                                               fused=False))
            runs["compact"].append(geoseg_tile(c2, catalog, args.work / "store_compact", args.cube_size,
                                               args.overlap, store="compact"))
            runs["write"].append(write_floor(args.work / "store_2", args.work))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1][0]:.1f} s" for k, v in runs.items()), flush=True)
    peaks = {}
    for size, scene_dir, cat in ((args.small, small.scene, small_catalog), (args.size, demo.scene, catalog)):
        with contextlib.ExitStack() as stack:  # fresh workers, one scene each: peak memory against scene size
            c_fresh, _ = _cluster(stack, 2, scene_dir)
            geoseg_tile(c_fresh, cat, args.work / f"store_peak_{size}", args.cube_size, args.overlap)
            peaks[size] = _peaks(c_fresh)
    load_end = os.getloadavg()
    best = {k: min(v, key=lambda run: run[0]) for k, v in runs.items()}
    t_plain, cpu_plain = best["plain"]
    t_tg, cpu_tg, done, total = best["torchgeo"]
    tg_rate = mpx * done / total / t_tg
    t_write, cpu_write, gb = best["write"]
    one = (best["one"][0], best["one"][1], None, warm1, best["one"][2], [r[0] for r in runs["one"]])
    two = (best["two"][0], best["two"][1], peaks[args.size], warm2, best["two"][2], [r[0] for r in runs["two"]])
    old = best["two_old"]
    compact = best["compact"]
    rate1, rate2 = mpx / one[0], mpx / two[0]
    rows = [
        ("(a) rasterio windowed read, 1 thread (read only)", t_plain, mpx / t_plain, cpu_plain),
        (f"(b) torchgeo RasterDataset + GridGeoSampler ({done}/{total} chips, extrapolated)", t_tg * total / done,
         tg_rate, cpu_tg * total / done),
        ("(c) geoseg tile, 1 worker process", one[0], rate1, one[4]),
        ("(c) geoseg tile, 2 worker processes", two[0], rate2, two[4]),
        ("(c') geoseg tile, 2 worker processes, two-step features (numpy resampling + index kernel)", old[0],
         mpx / old[0], old[2]),
        ("(c-compact) geoseg tile --store compact, 2 worker processes", compact[0], mpx / compact[0], compact[2]),
        (f"(d) plain write of the cube + label bytes geoseg writes ({gb:.2f} GB), 1 thread, write only",
         t_write, mpx / t_write, cpu_write),
    ]
    ratios = [
        ("geoseg 2 workers / (a) plain read", rate2 / (mpx / t_plain), "≥ 1"),
        ("geoseg 2 workers / (b) torchgeo", rate2 / tg_rate, "≥ 5"),
        ("geoseg 2 workers / 1 worker", rate2 / rate1, "≥ 1.7"),
        ("geoseg --store compact, 2 workers / (a) plain read", mpx / compact[0] / (mpx / t_plain), "≥ 0.5"),
        ("geoseg --store compact, 2 workers / (b) torchgeo", mpx / compact[0] / tg_rate, "≥ 5"),
        ("geoseg 2 workers: fused kernel / two-step features (time of (c') / (c))", old[0] / two[0], "(info)"),
        ("geoseg 2 workers / ((a) read then (d) write, no computation)", rate2 / (mpx / (t_plain + t_write)), "(info)"),
        ("CPU cost per pixel: geoseg (2 workers) / (a) plain read", two[4] / cpu_plain, "(info)"),
        ("CPU cost per pixel: geoseg (2 workers) / ((a) + (d))", two[4] / (cpu_plain + cpu_write), "(info)"),
    ]
    memory = [(args.small, peaks[args.small]), (args.size, peaks[args.size])]
    lines = [
        "# Tiler benchmark",
        "",
        f"`python benchmarks/bench_tiler.py --size {args.size}` — demo scene {args.size} × {args.size} px "
        f"({mpx:.1f} Mpx, 12 bands at 10/20/60 m + SCL, DEFLATE GeoTIFF), cubes {args.cube_size} px, "
        f"overlap {args.overlap}. Throughput = scene megapixels / wall seconds (Dask cluster start-up and worker warm-up excluded, "
        f"reported below). Every measurement is the fastest of {args.repeats} alternating rounds (a, b, c 1 worker, c 2 workers, c', c-compact, d; every run is listed below): "
        "on a VM the first write of fresh memory can cost several times more (docs/tiling.md).",
        "",
        *machine,
        "",
        "| method | wall s | Mpx/s | CPU s | Mpx per CPU s |",
        "|---|---:|---:|---:|---:|",
        *[f"| {name} | {sec:.1f} | {rate:.2f} | {cpu:.1f} | {mpx / cpu:.2f} |" for name, sec, rate, cpu in rows],
        "",
        "| ratio | measured | target |",
        "|---|---:|---:|",
        *[f"| {name} | {value:.2f} | {target} |" for name, value, target in ratios],
        "",
        "| scene size | peak RSS per geoseg worker (MB) |",
        "|---:|---|",
        *[f"| {size} × {size} | {', '.join(map(str, peaks))} |" for size, peaks in memory],
        "",
        f"geoseg tiling phase alone: 1 worker {one[1]:.1f} s, 2 workers {two[1]:.1f} s. Worker warm-up "
        f"(imports + numba compilation of the recipe kernel, once per worker process, before the clock): "
        f"{one[3]:.1f} s with 1 worker, {two[3]:.1f} s with 2. Every run (wall s): "
        + "; ".join(f"{name} {', '.join(f'{r[0]:.1f}' for r in runs[key])}" for key, name in
                    (("plain", "(a)"), ("torchgeo", "(b)"), ("one", "(c) 1 worker"), ("two", "(c) 2 workers"),
                     ("two_old", "(c')"), ("compact", "(c-compact)"), ("write", "(d)"))) + ".",
        f"Load average (1, 5, 15 min) at start {', '.join(f'{x:.1f}' for x in load_start)}, at the end "
        f"{', '.join(f'{x:.1f}' for x in load_end)}: the machine is shared. CPU s = process CPU time (all geoseg worker "
        "processes + the client); Mpx per CPU s is the cost per pixel, which other jobs on the machine "
        "disturb far less than wall time.",
        "",
    ]
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
