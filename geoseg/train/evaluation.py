"""``evaluate(bundle, cubes, out)``: score a model bundle on a CubeStore split.

EVAL_DIR layout (written to a temporary directory and renamed when complete)::

    metrics.json             mIoU, OA, macro F1, kappa, per class (by name) IoU/F1/precision/
                             recall/support, the confusion matrix, what was evaluated
    confusion_matrix.png     row-normalised, with class names
    evaluation_report.txt    the same as readable text
    examples/example_K.png   with save_examples: natural colour | ground truth | prediction | errors
                             of the worst cube, one cube per class, random cubes
                             (:mod:`geoseg.train.examples`), labelled with cube id, split,
                             pixel accuracy and why it was chosen (also listed in metrics.json)

The model sees exactly what it saw in validation: the bundle's normalisation (valid pixels
only), whole cubes, ``model(x)`` — so a bundle written by ``geoseg train`` reproduces its
validation scores on the validation split. Device, precision and the forward pass are the
predictor's (:class:`geoseg.bundle.ModelRunner`): ``--device cuda`` without a GPU is the same
one-line error.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from geoseg.bundle import ModelRunner, load_bundle, resolve_bundle_dir, resolve_device
from geoseg.bundle.series import check_series_input
from geoseg.config.schema import with_overrides
from geoseg.errors import ConfigError, LabelError
from geoseg.train.evaluate_options import EvaluateOptions
from geoseg.train.examples import (
    CubeTally,
    Example,
    choose_examples,
    count_for,
    example_title,
    pixel_accuracy,
)
from geoseg.train.metrics import IGNORE_INDEX, Scores, confusion_scores
from geoseg.utils.memory import keep_freed_memory
from geoseg.utils.outputs import atomic_folder, check_not_input, claim_folder, legacy_entries
from geoseg.validity import valid_mask_numpy

if TYPE_CHECKING:
    from geoseg.data.chips import ChipList
    from geoseg.data.datamodule import CubeDataModule

__all__ = ["EvalResult", "evaluate", "format_report"]

log = logging.getLogger(__name__)
EVAL_KIND = "evaluation"
_LEGACY = legacy_entries("metrics.json", "evaluation_report.txt", optional=("confusion_matrix.png", "examples"),
                         contains={"evaluation_report.txt": "geoseg evaluation report"})


@dataclass
class EvalResult:
    """Scores of one evaluation and the files written."""

    out: Path
    split: str
    scores: Scores
    metrics: dict[str, Any]
    examples: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def _check_compatible(bundle, store) -> None:
    cfg = bundle.config
    if list(store.channel_names) != list(cfg.channel_names):
        raise ConfigError(f"the cubes' channels {store.channel_names} differ from the model's {cfg.channel_names}",
                          path=store.path, hint="tile with the model's recipe (see its config.json)")
    if [c.code for c in store.classes] != [c.code for c in cfg.classes]:
        raise LabelError(
            f"the cubes' class codes {[c.code for c in store.classes]} differ from the model's "
            f"{[c.code for c in cfg.classes]}", path=store.path, hint="evaluate on cubes tiled with the model's class map")
    check_series_input(cfg.model, getattr(store, "time_steps", None), store.path)


def evaluate(
    bundle_dir: str | Path,
    cubes: str | Path | ChipList,
    out: str | Path,
    options: EvaluateOptions | None = None,
    **overrides: Any,
) -> EvalResult:
    """Evaluate the model bundle ``bundle_dir`` (e.g. MODEL_DIR/best) on a split of ``cubes``.

    Args:
        bundle_dir: A model bundle written by ``geoseg train`` (config.json + weights: MODEL_DIR/best,
            final or epoch_N), or the training run's MODEL_DIR: its ``best`` bundle is used
            (``final`` when no validation ran), as by ``geoseg predict``.
        cubes: CubeStore directory, or a :class:`~geoseg.data.chips.ChipList` (chips listed in a
            CSV, seed 001's form: all of them are scored, as the split ``split``).
        out: EVAL_DIR (replaced atomically).
        options: split, batch size, example figures, precision, device, DataLoader workers,
            compile (:class:`~geoseg.train.EvaluateOptions`; default ``EvaluateOptions()``).
        **overrides: single options on top of ``options``, e.g. ``evaluate(m, c, o, split="val")``.

    Returns:
        The :class:`EvalResult`.

    Raises:
        CheckpointError: Not a model directory, or it does not exist.
        MissingFileError: No CubeStore at ``cubes``.
        ConfigError / LabelError: Channels or class map of cubes and model differ; the
            device is not available; an option is invalid.
        EmptyAreaError: The split has no cubes.
    """
    opts = with_overrides(options or EvaluateOptions(), overrides)
    split, batch_size, save_examples = opts.split, opts.batch_size, opts.save_examples
    from geoseg.data.chips import ChipList
    from geoseg.data.datamodule import CubeDataModule
    from geoseg.train.plots import plot_confusion

    claim_folder(out, EVAL_KIND, legacy=_LEGACY)  # before any work
    keep_freed_memory()
    start = time.perf_counter()
    dev = resolve_device(opts.device)
    bundle_path = resolve_bundle_dir(bundle_dir, flag="")  # a training run: its best (or final) bundle
    bundle = load_bundle(bundle_path, device=dev)
    check_not_input({"--out": out}, [bundle_dir, *(cubes.inputs() if isinstance(cubes, ChipList) else [cubes])])
    cfg = bundle.config
    source = (cubes.open(split, recipe=cfg.recipe, classes=cfg.classes) if isinstance(cubes, ChipList)
              else cubes)
    dm = CubeDataModule(source, batch_size=batch_size, num_workers=opts.num_workers,
                        target_size=opts.target_size or cfg.eval_resize,
                        target_mode="resize", augment=False, normalization=cfg.normalization)
    _check_compatible(bundle, dm.store)
    dm.mask_channels = cfg.mask_channels
    ids = dm.split_ids(split)
    size = opts.target_size or cfg.eval_resize or dm.store.cube_size
    runner = ModelRunner(bundle, dev, fp16=opts.fp16, cpu_precision="bfloat16", compile=opts.compile,
                         engine=opts.engine, work_pixels=len(ids) * size * size, auto_bf16=False)
    k = len(cfg.classes)
    confusion = MulticlassConfusionMatrix(k, ignore_index=IGNORE_INDEX, validate_args=False).to(dev)
    tally = CubeTally(k)
    loader = dm.loader(split)
    with torch.inference_mode():
        for batch in loader:
            batch = dm.prepare_batch({key: v.to(dev, non_blocking=True) for key, v in batch.items()}, train=False)
            x, y = batch["image"], batch["mask"].long()
            pred = runner.logits(x).max(1).indices  # = argmax, faster
            confusion.update(pred, y)
            tally.update(pred, y)
    scores = confusion_scores(confusion.compute())
    names = [c.name for c in cfg.classes]
    chosen, left_out = choose_examples(tally.labelled, tally.correct, tally.class_pixels, names, save_examples)
    if left_out:
        log.info("example figures: no room for classes %s (--save-examples %d shows every class)",
                 ", ".join(left_out), count_for(save_examples - save_examples // 4 + len(left_out)))
    figures = _example_figures(dm, runner, split, ids, chosen, dev)
    metrics = {
        **scores.to_dict(names),
        "split": split, "num_cubes": int(len(ids)), "cubes": str(Path(dm.store.path).resolve()),
        "model_dir": str(bundle_path.resolve()), "model": cfg.model.name,
        "encoder": cfg.model.encoder, "classes": [c.model_dump() for c in cfg.classes],
        "miou_definition": "mean IoU over classes present in the ground truth or the prediction",
        "precision": runner.precision, "engine": runner.engine,
        "engine_reason": runner.choice.reason if runner.choice else "no batch ran",
        "examples": [{"file": f.name, "cube_id": f.cube_id, "reasons": list(f.reasons), "pixel_accuracy": f.accuracy}
                     for f in figures],
    }
    written: list[Path] = []
    with atomic_folder(out, EVAL_KIND, legacy=_LEGACY) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        plot_confusion(scores.confusion, names, tmp / "confusion_matrix.png")
        (tmp / "evaluation_report.txt").write_text(format_report(scores, cfg, metrics))
        for figure in figures:
            figure.draw(tmp, cfg, split)
            written.append(Path(out) / figure.name)
    seconds = time.perf_counter() - start
    log.info("evaluated %s on %d %s cubes in %.1f s: mIoU %.4f", bundle_path, len(ids), split, seconds, scores.miou)
    return EvalResult(Path(out), split, scores, metrics, written, seconds)


@dataclass
class _Figure:
    """One example figure: the cube (normalised, as the model saw it; ``(T, C, H, W)`` for a series), its labels
    and prediction."""

    name: str
    cube_id: int
    reasons: tuple[str, ...]
    image: np.ndarray
    truth: np.ndarray
    pred: np.ndarray

    @property
    def accuracy(self) -> float | None:
        return pixel_accuracy(self.truth, self.pred)

    def draw(self, folder: Path, cfg: Any, split: str) -> None:
        from geoseg.train.plots import has_rgb, plot_example, rgb_composite

        norm, image, title = cfg.normalization, self.image, example_title(self.cube_id, split, self.accuracy,
                                                                          self.reasons)
        if image.ndim == 4:  # a series (T, C, H, W): the clearest date's natural colour, nodata where no date is valid
            dates = valid_mask_numpy(image, cfg.mask_channels, channel_dim=1)[:, 0]
            clearest = int(dates.sum(axis=(1, 2)).argmax())
            image, valid = image[clearest], dates.any(axis=0)
            title += f" — date {clearest + 1}/{len(dates)} shown (the clearest)"
        else:
            valid = valid_mask_numpy(image, cfg.mask_channels, channel_dim=0)[0]  # the map leaves the rest nodata
        rgb = (rgb_composite(image, cfg.channel_names, norm.mean, norm.std, mask_channels=cfg.mask_channels)
               if has_rgb(cfg.channel_names) else None)
        plot_example(rgb, self.truth, np.where(valid, self.pred, IGNORE_INDEX), cfg.classes, folder / self.name,
                     title=title)


def _example_figures(dm: CubeDataModule, runner: ModelRunner, split: str, ids: np.ndarray, chosen: list[Example],
                     dev: torch.device) -> list[_Figure]:
    """Predict the chosen cubes again (a few forward passes, instead of keeping every prediction)."""
    dataset, figures = dm.datasets[split], []  # built by dm.loader(split)
    for start in range(0, len(chosen), dm.batch_size):
        part = chosen[start:start + dm.batch_size]
        items = [dataset[e.position] for e in part]
        with torch.inference_mode():
            batch = dm.prepare_batch({key: torch.stack([item[key] for item in items]).to(dev)
                                      for key in ("image", "mask")}, train=False)
            pred = runner.logits(batch["image"]).max(1).indices.cpu().numpy()
        x, y = batch["image"].float().cpu().numpy(), batch["mask"].cpu().numpy()
        figures += [_Figure(f"examples/example_{start + j}.png", int(ids[e.position]), e.reasons, x[j], y[j], pred[j])
                    for j, e in enumerate(part)]
    return figures


def _fmt(value: float | None) -> str:
    return "   n/a" if value is None or np.isnan(value) else f"{value:6.4f}"


def format_report(scores: Scores, cfg: Any, metrics: dict[str, Any]) -> str:
    """The text of ``evaluation_report.txt``."""
    lines = [
        "geoseg evaluation report",
        "=" * 24,
        f"model      {metrics['model_dir']} ({metrics['model']}, encoder {metrics['encoder']})",
        f"cubes      {metrics['cubes']} — split {metrics['split']!r}, {metrics['num_cubes']} cubes, "
        f"{scores.num_pixels} labelled pixels",
        f"precision  {metrics['precision']}",
        "",
        f"mIoU   {_fmt(scores.miou)}   (over the {metrics['classes_scored']} classes present in ground truth or prediction)",
        f"OA     {_fmt(scores.oa)}",
        f"F1     {_fmt(scores.f1_macro)}   (macro, = mean Dice)",
        f"kappa  {_fmt(scores.kappa)}",
        "",
        f"{'class':<20} {'code':>4} {'IoU':>6} {'F1':>6} {'prec.':>6} {'recall':>6} {'support':>10}",
    ]
    for i, c in enumerate(cfg.classes):
        lines.append(f"{c.name:<20} {c.code:>4} {_fmt(scores.iou[i])} {_fmt(scores.f1[i])} "
                     f"{_fmt(scores.precision[i])} {_fmt(scores.recall[i])} {int(scores.support[i]):>10}")
    lines += ["", "confusion matrix (rows: ground truth, columns: prediction; pixels)"]
    width = max(8, len(str(int(scores.confusion.max(initial=0)))) + 1)
    short = [c.name[:width - 1] for c in cfg.classes]
    lines.append(" " * 20 + "".join(f"{s:>{width}}" for s in short))
    for i, c in enumerate(cfg.classes):
        lines.append(f"{c.name:<20}" + "".join(f"{int(v):>{width}}" for v in scores.confusion[i]))
    return "\n".join(lines) + "\n"
