"""Benchmark geoseg train: step throughput against a bare PyTorch loop, and real-data quality.

Part 1 (``throughput``): cubes/s of the training steps of ``geoseg.train.train`` against a
bare PyTorch loop over the same model, the same in-memory cubes, the same batch size,
optimiser, loss, normalisation and augmentation, in one run (runs alternate, medians of
the epochs after the first). Also the fraction of step time spent waiting for data with
the default ``num_workers`` (in memory: 0 workers; lazy zarr reads: 2 workers), from
Lightning's SimpleProfiler.

Part 2 (``quality``): ../shared/data/terramind_examples — five real 224 × 224 px L2A
samples with Esri LULC labels. Cubes of 56 px; every architecture trains on the west half
(columns 0–111) of all five samples and is evaluated on the east half, pooled over the
samples (one confusion matrix: mIoU over the classes present in truth or prediction, OA),
next to a per-pixel random forest (scikit-learn, 200 trees) on the same 24 channels and the
same split.

    python benchmarks/bench_train.py                      # both parts
    python benchmarks/bench_train.py --part throughput --repeats 3
    python benchmarks/bench_train.py --part quality --epochs 60

Writes docs/benchmarks_train.md (tables + machine); prints every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SHARED = Path(os.environ.get("GEOSEG_SHARED_DATA", REPO.parent / "shared" / "data"))


# ----------------------------------------------------------------------------- part 1
def demo_store(work: Path) -> Path:
    """The demo scene of pipelines/demo.yaml's tiling (960 px, 64 px cubes)."""
    from geoseg.tiling import tile_dataset

    out = work / "demo_cubes"
    if not (out / "manifest.json").exists():
        tile_dataset(REPO / "data_catalog.yaml", "demo", out, cube_size=64, overlap=0, min_valid=0.2,
                     split=(0.7, 0.15, 0.15), split_block=2, seed=0, workers=2, progress=False)
    return out


class StepTimer:
    """Lightning callback: wall time of each epoch's training batches (validation excluded)."""

    def __new__(cls, *args: Any, **kwargs: Any):  # subclass lazily: lightning is imported late
        from lightning.pytorch.callbacks import Callback

        class _Timer(Callback):
            def __init__(self) -> None:
                self.epochs: list[tuple[int, float, float]] = []  # batches, wall s, CPU s
                self.profile: dict[str, float] = {}

            def on_train_epoch_start(self, trainer, pl_module) -> None:
                self._start, self._cpu0, self._n = time.perf_counter(), time.process_time(), 0

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                self._n += 1
                self._end, self._cpu1 = time.perf_counter(), time.process_time()

            def on_validation_start(self, trainer, pl_module) -> None:
                if not trainer.sanity_checking:
                    self.epochs.append((self._n, self._end - self._start, self._cpu1 - self._cpu0))

            def on_fit_end(self, trainer, pl_module) -> None:
                durations = getattr(trainer.profiler, "recorded_durations", {})
                self.profile = {k: float(sum(v)) for k, v in durations.items()}

        return _Timer()


def run_geoseg(cubes: Path, out: Path, model: str, encoder: str, epochs: int, batch: int,
               in_memory: str, options: dict) -> dict[str, float]:
    from geoseg.train import TrainConfig, train

    timer = StepTimer()
    cfg = TrainConfig(cubes=cubes, out=out, model=model, encoder=encoder, epochs=epochs, batch_size=batch,
                      progress=False, patience=None, overwrite=True, in_memory=in_memory, profiler="simple",
                      model_options=options)
    train(cfg, callbacks=[timer])
    epochs_after_first = timer.epochs[1:]
    wait = sum(v for k, v in timer.profile.items() if k.endswith("train_dataloader_next"))
    steps = sum(v for k, v in timer.profile.items() if k == "run_training_batch") + wait
    return {"cubes_s": statistics.median(n * batch / t for n, t, _ in epochs_after_first),
            "cubes_cpu_s": statistics.median(n * batch / c for n, _, c in epochs_after_first),
            "wait_fraction": wait / steps if steps else float("nan")}


def run_bare(cubes: Path, model: str, encoder: str, epochs: int, batch: int, options: dict) -> dict[str, float]:
    """The same work as a geoseg training epoch, written as a plain loop."""
    from geoseg.bundle import normalize
    from geoseg.data.augment import random_dihedral
    from geoseg.data.datamodule import store_normalization
    from geoseg.models import create_model
    from geoseg.tiling import CubeStore
    from geoseg.train import SegmentationLoss

    store = CubeStore.open(cubes)
    ids = store.ids("train")
    x_all = torch.from_numpy(store.read_cubes(ids))
    y_all = torch.from_numpy(store.read_labels(ids))
    norm = store_normalization(store)
    k = len(store.classes)
    torch.manual_seed(0)
    net = create_model(model, in_channels=store.num_channels, num_classes=k, encoder=encoder,
                       channel_names=store.channel_names, options=options)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4, fused=True)
    steps_per_epoch = len(ids) // batch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    loss_fn = SegmentationLoss(k)
    g = torch.Generator().manual_seed(0)
    rates, cpu_rates = [], []
    for _epoch in range(epochs):
        start, cpu = time.perf_counter(), time.process_time()
        order = torch.randperm(len(ids), generator=g)
        for s in range(steps_per_epoch):
            idx = order[s * batch:(s + 1) * batch]
            x = normalize(x_all[idx], norm, store.recipe.num_mask_channels)
            x, y = random_dihedral(x, y_all[idx], generator=g)
            out = net.forward_train(x)
            loss, _ = loss_fn(out, y.long())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        rates.append(steps_per_epoch * batch / (time.perf_counter() - start))
        cpu_rates.append(steps_per_epoch * batch / (time.process_time() - cpu))
    return {"cubes_s": statistics.median(rates[1:]), "cubes_cpu_s": statistics.median(cpu_rates[1:])}


def throughput(work: Path, repeats: int, epochs: int) -> list[str]:
    cubes = demo_store(work)
    cases = [("unet", "resnet18", {}), ("unet", "test_resnet", {"decoder_channels": [32, 16, 16, 8, 8]})]
    rows, lines = [], []
    for model, encoder, options in cases:
        g_runs, b_runs = [], []
        for r in range(repeats):  # alternate geoseg / bare so that machine load hits both
            g_runs.append(run_geoseg(cubes, work / "tp_model", model, encoder, epochs, 8, "auto", options))
            b_runs.append(run_bare(cubes, model, encoder, epochs, 8, options))
            print(f"  {model}/{encoder} repeat {r + 1}: geoseg {g_runs[-1]['cubes_s']:.2f} cubes/s, "
                  f"bare {b_runs[-1]['cubes_s']:.2f} cubes/s", flush=True)
        g, b = (statistics.median(x["cubes_s"] for x in runs) for runs in (g_runs, b_runs))
        gc, bc = (statistics.median(x["cubes_cpu_s"] for x in runs) for runs in (g_runs, b_runs))
        wait = statistics.median(x["wait_fraction"] for x in g_runs)
        lazy = run_geoseg(cubes, work / "tp_model", model, encoder, epochs, 8, "no", options)
        rows.append(f"| {model} | {encoder} | {bc:.2f} | {gc:.2f} | {gc / bc:.3f} ({100 * (bc / gc - 1):+.1f} %) | "
                    f"{b:.2f} | {g:.2f} | {g / b:.3f} | {100 * wait:.2f} % | {lazy['cubes_s']:.2f} | "
                    f"{100 * lazy['wait_fraction']:.2f} % |")
        print(f"{model}/{encoder}: CPU-time throughput bare {bc:.2f}, geoseg {gc:.2f} cubes/s (ratio {gc / bc:.3f}, "
              f"overhead {100 * (bc / gc - 1):+.1f} %); wall clock bare {b:.2f}, geoseg {g:.2f}; data wait "
              f"{100 * wait:.2f} % in memory; lazy zarr + 2 workers {lazy['cubes_s']:.2f} cubes/s, wait "
              f"{100 * lazy['wait_fraction']:.2f} %", flush=True)
    lines += [
        "## Step throughput: geoseg train vs a bare PyTorch loop", "",
        f"Demo cubes (pipelines/demo.yaml tiling: 64 px, batch 8, 24 channels), {epochs} epochs per run, "
        f"medians over epochs 2..{epochs} and {repeats} alternating repeats; torch threads: {torch.get_num_threads()}.",
        "The bare loop does the same work per step (valid-pixel normalisation, random flips/rotations, "
        "`forward_train`, CE + Dice, fused AdamW, cosine schedule) on tensors held in memory.", "",
        "Throughput per CPU second (`time.process_time`, this process) is the robust comparison on a shared "
        "machine; wall-clock figures follow the machine's load. Data wait = time in the dataloader's `next` "
        "(Lightning SimpleProfiler) / (that + `run_training_batch`).", "",
        "| model | encoder | bare cubes/CPU-s | geoseg cubes/CPU-s | ratio (overhead) | bare cubes/s (wall) "
        "| geoseg cubes/s (wall) | wall ratio | data wait (default: in memory, 0 workers) "
        "| lazy zarr, 2 workers: cubes/s (wall) | data wait (lazy) |",
        "|---|---|---|---|---|---|---|---|---|---|---|", *rows, ""]
    return lines


# ----------------------------------------------------------------------------- part 2
def resplit_west_east(src: Path, dst: Path, west_cols: int = 112, layout: str = "west_east") -> Path:
    """Copy a CubeStore; cubes left of ``west_cols`` become ``train``, the others ``test``.

    ``layout="checker"`` instead alternates train/test cubes like a checkerboard in every
    sample (both halves in both splits, the same number of cubes): a control experiment
    without the west/east shift of class frequencies. The train statistics (normalisation)
    are recomputed over the new train split.
    """
    import geopandas as gpd

    from geoseg.tiling import CubeStore

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    index = gpd.read_parquet(dst / "index.parquet")
    west = (index["col_off"] + index["width"]) <= west_cols
    if not ((index["col_off"] >= west_cols) | west).all():
        raise ValueError("cubes straddle the west/east boundary: use a cube size dividing it")
    if layout == "checker":
        size = int(index["width"].max())
        west = ((index["row_off"] // size + index["col_off"] // size) % 2 == 0).to_numpy()
    index["split"] = np.where(west, "train", "test")
    index.to_parquet(dst / "index.parquet", index=False)
    store = CubeStore.open(dst)
    stats = json.loads((dst / "stats.json").read_text())
    for split in ("train", "test"):
        cubes = store.read_cubes(store.ids(split))
        valid = np.abs(cubes[:, :11]).sum(1) > 0
        values = cubes.transpose(1, 0, 2, 3)[:, valid].astype(np.float64)
        stats["by_split"][split] = {"mean": values.mean(1).tolist(), "std": values.std(1).tolist(),
                                    "count": int(valid.sum())}
    stats["by_split"]["val"] = {"mean": stats["mean"], "std": stats["std"], "count": 0}
    (dst / "stats.json").write_text(json.dumps(stats))
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["splits"] = {"train": int(west.sum()), "val": 0, "test": int((~west).sum())}
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def west_east_store(work: Path, cube: int, layout: str = "west_east") -> Path:
    """terramind_examples tiled into ``cube`` px cubes, split west (train) / east (test)."""
    from geoseg.tiling import tile_dataset

    tiled, cubes = work / f"terramind{cube}", work / f"terramind{cube}_{layout}"
    if not (tiled / "manifest.json").exists():
        tile_dataset(REPO / "data_catalog.yaml", "terramind", tiled, cube_size=cube, overlap=0, min_valid=0.0,
                     split=(0.6, 0.2, 0.2), split_block=1, seed=0, workers=2, progress=False)
    if not (cubes / "manifest.json").exists():
        resplit_west_east(tiled, cubes, layout=layout)
    return cubes


def _confusion(truth: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    keep = truth != 255
    return np.bincount(truth[keep].astype(np.int64) * k + pred[keep].astype(np.int64),
                       minlength=k * k).reshape(k, k)


def per_scene(store_dir: Path, pred: np.ndarray) -> dict[str, dict[str, float]]:
    """mIoU / OA of the east-half predictions ``pred`` (test cubes, in id order) per sample."""
    from geoseg.tiling import CubeStore
    from geoseg.train.metrics import confusion_scores

    store = CubeStore.open(store_dir)
    ids = store.ids("test")
    truth = store.read_labels(ids)
    scene = store.index.set_index("cube_id").loc[ids, "scene_id"].to_numpy()
    out = {}
    for sid in sorted(set(scene)):
        s = confusion_scores(_confusion(truth[scene == sid], pred[scene == sid], len(store.classes)))
        out[str(sid)] = {"miou": s.miou, "oa": s.oa}
    return out


def forest(store_dir: Path, trees: int = 200) -> tuple[dict[str, Any], float]:
    """Per-pixel random forest on the 24 channels: west-half pixels → east-half pixels."""
    from sklearn.ensemble import RandomForestClassifier

    from geoseg.tiling import CubeStore
    from geoseg.train.metrics import confusion_scores

    store = CubeStore.open(store_dir)
    k = len(store.classes)
    start = time.perf_counter()
    ids = store.ids("train")
    x, y = store.read_cubes(ids), store.read_labels(ids)
    keep = y != 255
    rf = RandomForestClassifier(n_estimators=trees, n_jobs=-1, random_state=0).fit(x.transpose(0, 2, 3, 1)[keep], y[keep])
    ids = store.ids("test")
    xe, ye = store.read_cubes(ids), store.read_labels(ids)
    pred = rf.predict(xe.transpose(0, 2, 3, 1).reshape(-1, xe.shape[1])).reshape(ye.shape).astype(np.uint8)
    s = confusion_scores(_confusion(ye, pred, k))
    return {"miou": s.miou, "oa": s.oa, "iou": s.iou.tolist(), "scenes": per_scene(store_dir, pred)}, \
        time.perf_counter() - start


def predict_test(bundle_dir: Path, store_dir: Path) -> np.ndarray:
    """Class indices of the bundle on the test cubes (the datamodule's normalisation, whole cubes)."""
    import geoseg.data.datamodule as datamodule
    from geoseg.bundle import load_bundle
    from geoseg.tiling import CubeStore

    bundle, store = load_bundle(bundle_dir), CubeStore.open(store_dir)
    x = torch.from_numpy(store.read_cubes(store.ids("test")))
    with torch.inference_mode():
        x = datamodule.normalize(x, bundle.config.normalization, bundle.config.mask_channels)
        return torch.cat([bundle.model(b).max(1).indices for b in x.split(8)]).numpy().astype(np.uint8)


def _clipped_normalize(limit: float):
    """``normalize`` with z-scores clamped to ±limit (masked pixels stay 0) — an experiment."""
    from geoseg.bundle import normalize

    def run(x, norm, mask_channels=11):
        return normalize(x, norm, mask_channels).clamp(-limit, limit)

    return run


def quality(work: Path, epochs: int, archs: list[str], variants: dict[str, dict], encoder: str,
            batch: int) -> list[str]:
    from geoseg.tiling import CubeStore
    from geoseg.train import TrainConfig, evaluate, train

    data = SHARED / "terramind_examples"
    if not data.exists():
        return ["## Real data (terramind_examples)", "", f"skipped: {data} is missing.", ""]
    base = west_east_store(work, 56)
    store = CubeStore.open(base)
    names = [c.name for c in store.classes]
    scene_ids = sorted(set(store.index["scene_id"]))
    def run_forest(cubes: Path) -> tuple[dict[str, Any], float]:
        cached = work / f"forest_{cubes.name}.json"  # the forest does not depend on the deep-model options
        if cached.exists():
            d = json.loads(cached.read_text())
            return d["scores"], d["seconds"]
        rf, rf_s = forest(cubes)
        cached.write_text(json.dumps({"scores": rf, "seconds": rf_s}))
        print(f"random forest (200 trees, {cubes.name}): mIoU {rf['miou']:.4f}, OA {rf['oa']:.4f} ({rf_s:.0f} s)",
              flush=True)
        return rf, rf_s

    rf, rf_s = run_forest(base)
    def row(label: str, n_epochs: Any, scores: dict[str, Any], seconds: float) -> str:
        scenes = " | ".join(f"{scores['scenes'][s]['miou']:.2f} / {scores['scenes'][s]['oa']:.2f}" for s in scene_ids)
        return (f"| {label} | {n_epochs} | **{scores['miou']:.4f}** | {scores['oa']:.4f} | {seconds:.0f} | "
                + " ".join(_iou(v) for v in scores["iou"]) + f" | {scenes} |")

    rows = [row("random forest, 200 trees (per pixel)", "—", rf, rf_s)]
    results: dict[str, Any] = {"forest": rf}
    import geoseg.data.datamodule as datamodule

    plain = datamodule.normalize
    for variant, options in variants.items():
        extra = dict(options)
        clip = extra.pop("clip", None)
        n_epochs = extra.pop("epochs", epochs)
        layout = extra.pop("layout", "west_east")
        cubes = west_east_store(work, extra.pop("cube", 56), layout)
        if layout != "west_east":
            other, other_s = run_forest(cubes)
            results[f"forest/{layout}"] = other
            rows.append(row(f"random forest, 200 trees ({layout} split)", "—", other, other_s))
        datamodule.normalize = _clipped_normalize(clip) if clip else plain
        try:
            for arch in archs:
                cfg = TrainConfig(cubes=cubes, out=work / f"q_{variant}_{arch}", model=arch, encoder=encoder,
                                  epochs=n_epochs, batch_size=batch, lr=2e-3, val_split="test", patience=None,
                                  validate_every=max(1, n_epochs // 4), progress=False, overwrite=True, seed=0,
                                  **extra)
                start = time.perf_counter()
                train(cfg)
                seconds = time.perf_counter() - start
                ev = evaluate(cfg.out / "final", cubes, work / f"q_eval_{variant}_{arch}", split="test")
                s = ev.scores
                pred = predict_test(cfg.out / "final", cubes)
                scores = {"miou": s.miou, "oa": s.oa, "iou": s.iou.tolist(), "seconds": seconds,
                          "scenes": per_scene(cubes, pred)}
                results[f"{variant}/{arch}"] = scores
                print(f"{variant} {arch}: mIoU {s.miou:.4f}, OA {s.oa:.4f} ({seconds:.0f} s); per sample "
                      + ", ".join(f"{k} {v['miou']:.3f}/{v['oa']:.3f}" for k, v in scores["scenes"].items()), flush=True)
                rows.append(row(f"{arch} ({encoder}, {variant})", n_epochs, scores, seconds))
        finally:
            datamodule.normalize = plain
    (work / "quality.json").write_text(json.dumps(results, indent=1))
    return [
        "## Real data: terramind_examples, west half → east half", "",
        "Five real 224 × 224 px L2A samples (five UTM zones), Esri LULC labels. Training on columns 0–111 of "
        "every sample, scores on columns 112–223, pooled over the samples in one confusion matrix; mIoU over "
        "the classes present in truth or prediction. Deep models: `final/` after a fixed number of epochs "
        f"(no model selection on the east half, which is only monitored), encoder {encoder}, batch {batch}, "
        "AdamW 2e-3 cosine, CE + Dice, flips/rotations. Per-class IoU in class order: " + ", ".join(names)
        + " (— = absent from truth and prediction).", "",
        "| model | epochs | mIoU | OA | train s | per-class IoU | " + " | ".join(f"{s} mIoU / OA" for s in scene_ids) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(scene_ids), *rows, ""]


def _iou(v: float) -> str:
    return "—" if v is None or np.isnan(v) else f"{v:.2f}"


NOTES_MARKER = "<!-- analysis: kept by bench_train.py -->"

# real-data experiments (``--variants``); "long" = 3x --epochs
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "weights": {"class_weights": "auto"},  # median-frequency class weights
    "noaug": {"augment": False},  # no flips/rotations
    "clip5": {"clip": 5.0},  # z-scores clamped to ±5 (experiment; not the product's normalisation)
    "c112": {"cube": 112},  # 112 px cubes (10 west, 10 east), whole cubes
    "c112crop": {"cube": 112, "target_size": 56},  # 112 px cubes, random 56 px training crops
    "long": {},
    "checker": {"layout": "checker"},  # control: checkerboard split of the cubes (no west/east shift)
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["all", "throughput", "quality"], default="all")
    p.add_argument("--work", type=Path, default=Path("/tmp/geoseg-bench-train"))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--tp-epochs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=60, help="epochs of the real-data runs")
    p.add_argument("--archs", default="unet,unet3plus,rsprunetpp,deeplabv3plus,pspnet")
    p.add_argument("--variants", default="default",
                   help="comma list of: " + ", ".join(VARIANTS))
    p.add_argument("--encoder", default="resnet18", help="encoder of the real-data runs")
    p.add_argument("--batch", type=int, default=8, help="batch size of the real-data runs")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: robust on a shared machine)")
    p.add_argument("--out", type=Path, default=DOCS / "benchmarks_train.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("GEOSEG_CACHE", str(args.work / "cache"))
    args.work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    lines = ["# Training benchmarks", "", f"Machine: {machine()}, lightning {_lightning()}, "
             f"load average at start {load:.1f}", ""]
    if args.part in ("all", "throughput"):
        lines += throughput(args.work, args.repeats, args.tp_epochs)
    if args.part in ("all", "quality"):
        long = {"long": {"epochs": 3 * args.epochs}}
        variants = {v: {**VARIANTS, **long}[v] for v in args.variants.split(",")}
        lines += quality(args.work, args.epochs, args.archs.split(","), variants, args.encoder, args.batch)
    text = "\n".join(lines) + "\n"
    print(text)
    # the hand-written analysis below NOTES_MARKER survives a re-run
    old = args.out.read_text() if args.out.exists() else ""
    notes = old[old.index(NOTES_MARKER):] if NOTES_MARKER in old else ""
    args.out.write_text(text + ("\n" + notes if notes else ""))


def _lightning() -> str:
    import lightning

    return lightning.__version__


if __name__ == "__main__":
    main()
