"""``predict_chips``: a folder of chips and a model in, one class mask per chip out (seed 001's inference).

Each chip (a GeoTIFF or ``.npy``/``.npz`` of Sentinel-2 bands, or of the recipe's channels;
:mod:`geoseg.features.chips`) is predicted as ``geoseg predict`` predicts a scene: the recipe's
channels, the bundle's normalisation, windows of the model's training size (``window``) with
``overlap``, the same blending and the same class rule (:func:`geoseg.stitch.output.classes_from_probs`).
Windows of several chips share a batch. The output folder holds, per chip ``NAME.ext``:

- ``NAME_layer.npz``: ``mask``, uint8 ``(H, W)`` class codes of the model's class map
  (0 where the chip has no valid data);
- ``NAME.tif`` (+ ``NAME.tif.aux.xml``, ``NAME.qml``) for a georeferenced chip: the styled
  land-cover COG that ``geoseg predict`` writes for a scene;
- with ``save_visualizations``: ``NAME_vis.png``, the chip's true colours beside the classes.

The folder is written under a temporary name and swapped in when every chip is done
(:func:`geoseg.utils.outputs.atomic_folder`): a folder of someone else's files is refused
before any work, files a user dropped into an earlier output folder stay, and a user's file
with the name of an output is refused, never overwritten.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoseg import __version__
from geoseg.bundle import ModelBundle, ModelRunner, load_model_bundle
from geoseg.config.catalog import ClassDef
from geoseg.config.schema import with_overrides
from geoseg.errors import ConfigError, EmptyAreaError, MissingFileError
from geoseg.features.chips import CHIP_SUFFIXES, Chip, read_chip
from geoseg.predict.options import PredictOptions
from geoseg.predict.predictor import default_workers, describe_model
from geoseg.predict.prefetch import prefetch
from geoseg.predict.windows import DEFAULT_FLOOR, window_layout
from geoseg.stitch.output import LandCoverWriter, classes_from_probs
from geoseg.stitch.stitcher import StitchedBlock
from geoseg.utils.outputs import SIGNATURE_TAG, atomic_folder, check_not_input, claim_folder
from geoseg.utils.progress import progress_bar

__all__ = ["ChipPrediction", "ChipsSummary", "predict_chips", "chip_files", "CHIPS_KIND"]

CHIPS_KIND = "chip predictions"  # the ownership marker's kind of the output folder


@dataclass(frozen=True)
class ChipPrediction:
    """What was written for one chip."""

    source: Path
    npz: Path
    tif: Path | None
    png: Path | None
    height: int
    width: int
    valid_pixels: int
    counts: dict[int, int]  # class code → pixels


@dataclass
class ChipsSummary:
    """A chips run: the output folder, one :class:`ChipPrediction` per chip, timings."""

    out: Path
    chips: list[ChipPrediction] = field(default_factory=list)
    seconds: float = 0.0
    model_seconds: float = 0.0
    device: str = "cpu"

    def lines(self) -> list[str]:
        """A human summary (what ``geoseg predict --data-path`` prints)."""
        georef = sum(c.tif is not None for c in self.chips)
        pixels = sum(c.height * c.width for c in self.chips)
        valid = sum(c.valid_pixels for c in self.chips)
        return [f"predicted {len(self.chips)} chips ({georef} georeferenced) in {self.seconds:.1f} s "
                f"(model {self.model_seconds:.1f} s on {self.device}); {valid / max(pixels, 1):.1%} valid pixels",
                f"wrote {self.out}: *_layer.npz" + (", *.tif" if georef else "")
                + (", *_vis.png" if any(c.png for c in self.chips) else "")]


def chip_files(data_path: str | Path) -> list[Path]:
    """The chips of ``data_path``: a chip file, or the chip files directly in a folder (sorted).

    Raises:
        MissingFileError: nothing at ``data_path``.
        EmptyAreaError: a folder without chip files.
    """
    path = Path(data_path)
    if not path.exists():
        raise MissingFileError("--data-path does not exist", path=path, hint="a folder of chips (.tif, .npy, .npz)")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in CHIP_SUFFIXES)
    if not files:
        raise EmptyAreaError("no chip files in the folder", path=path,
                             hint=f"chips are {', '.join(CHIP_SUFFIXES)} files directly in --data-path")
    return files


def _rgb(chip: Chip, names: list[str]) -> np.ndarray:
    """True colours (B04/B03/B02, else the first channel) stretched 2–98 % over valid pixels, uint8."""
    picks = [names.index(b) for b in ("B04", "B03", "B02") if b in names]
    bands = chip.features[picks] if len(picks) == 3 else np.repeat(chip.features[:1], 3, axis=0)
    out = np.zeros((*chip.valid.shape, 3), np.uint8)
    for k in range(3):
        values = bands[k][chip.valid]
        if values.size:
            lo, hi = np.percentile(values, [2, 98])
            scaled = np.clip((bands[k] - lo) / max(hi - lo, 1e-6), 0, 1)
            out[..., k] = np.where(chip.valid, np.rint(scaled * 255), 0).astype(np.uint8)
    return out


def _write_png(path: Path, chip: Chip, codes: np.ndarray, classes: list[ClassDef], names: list[str]) -> None:
    from PIL import Image

    palette = np.zeros((256, 3), np.uint8)
    for c in classes:
        palette[c.code] = c.rgb
    gap = np.full((codes.shape[0], 4, 3), 255, np.uint8)
    Image.fromarray(np.concatenate([_rgb(chip, names), gap, palette[codes]], axis=1)).save(path)


@dataclass
class _Pending:
    """A chip whose windows are in flight: blended probabilities so far, windows left."""

    index: int
    chip: Chip
    scores: np.ndarray
    weight: np.ndarray
    left: int


def predict_chips(
    data_path: str | Path,
    model: ModelBundle | str | Path,
    out: str | Path,
    options: PredictOptions | None = None,
    *,
    save_visualizations: bool = False,
    scale: float | None = None,
    **overrides: Any,
) -> ChipsSummary:
    """Predict every chip of ``data_path`` into the folder ``out`` (module docstring).

    Args:
        data_path: a folder of chips (or one chip file).
        model: a loaded bundle or its directory (a training run's MODEL_DIR works too).
        out: the output folder.
        options: window, overlap, batch size (windows per forward pass), device, fp16, TTA,
            progress (:class:`~geoseg.predict.PredictOptions`; ``overviews`` for the GeoTIFFs).
        save_visualizations: also write ``NAME_vis.png``.
        scale: DN per unit reflectance of the chips (default 10000).
        **overrides: single options on top of ``options``.

    Raises:
        OutputError: ``out`` is someone else's folder, or an input.
        ConfigError: two chips share a name.
        MissingFileError, CorruptRasterError, BandError, ScaleError: a chip cannot be read —
            before anything appears under ``out``.
    """
    opts = with_overrides(options or PredictOptions(), overrides)
    start = time.perf_counter()
    out = Path(out)
    files = chip_files(data_path)
    claim_folder(out, CHIPS_KIND)  # before any work
    check_not_input({"--out": out}, [data_path, model if isinstance(model, (str, Path)) else model.path])
    stems = [f.stem for f in files]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise ConfigError(f"several chips are named {dupes[0]!r}; their outputs would collide", path=Path(data_path),
                          hint="give every chip its own name (a.tif and a.npy both give a_layer.npz)")
    bundle = load_model_bundle(model)
    cfg = bundle.config
    recipe = cfg.recipe
    names = list(cfg.channel_names)
    classes = list(cfg.classes)
    codes = np.array([c.code for c in classes], dtype=np.uint8)
    runner = ModelRunner(bundle, device=opts.device, fp16=opts.fp16, tta=opts.tta)
    size = int(cfg.window if opts.window is None else opts.window)
    overlap = size // 4 if opts.overlap is None else int(opts.overlap)
    now = datetime.now(UTC)
    tags = {"model": describe_model(bundle), "model_dir": str(bundle.path) if bundle.path else "",
            "geoseg_version": __version__, "date": now.isoformat(timespec="seconds"), "recipe": recipe.name,
            "classes": "; ".join(f"{c.code}={c.name}" for c in classes), "TIFFTAG_SOFTWARE": f"geoseg {__version__}",
            SIGNATURE_TAG: "land cover", "TIFFTAG_DATETIME": now.strftime("%Y:%m:%d %H:%M:%S")}
    summary = ChipsSummary(out, device=str(runner.device))

    with atomic_folder(out, CHIPS_KIND) as tmp:

        def finish(p: _Pending) -> None:
            chip, source = p.chip, files[p.index]
            valid = chip.valid & (p.weight > 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                probs = np.where(valid, p.scores / p.weight, np.float32(0)).astype(np.float32)
            classes_out, _ = classes_from_probs(probs, valid, codes)
            npz = tmp / f"{source.stem}_layer.npz"
            np.savez_compressed(npz, mask=classes_out)
            tif = png = None
            if chip.grid is not None:  # as geoseg predict writes a scene's map
                tif = tmp / f"{source.stem}.tif"
                with LandCoverWriter(tif, chip.grid, classes, tags={**tags, "source_scene": str(source),
                                                                    "scene_id": source.stem},
                                     overviews=opts.overviews) as writer:
                    writer(StitchedBlock(0, probs, valid))
            if save_visualizations:
                png = tmp / f"{source.stem}_vis.png"
                _write_png(png, chip, classes_out, classes, names)
            found, n = np.unique(classes_out, return_counts=True)
            summary.chips.append(ChipPrediction(
                source, out / npz.name, None if tif is None else out / tif.name, None if png is None else out / png.name,
                int(valid.shape[0]), int(valid.shape[1]), int(valid.sum()),
                {int(c): int(k) for c, k in zip(found, n, strict=True) if c != 0}))

        def windows() -> Iterator[tuple[_Pending, Any, np.ndarray]]:
            def read(i: int) -> Chip:
                return read_chip(files[i], recipe, scale=scale)

            workers = opts.workers or default_workers()
            stream = prefetch(read, range(len(files)), workers=workers, depth=2 * workers)
            with contextlib.closing(stream):  # on errors, stop the read-ahead threads at once
                for i, chip in progress_bar(stream, total=len(files), desc="chips", unit="chip",
                                            enabled=opts.progress):
                    yield from chip_windows(i, chip)

        def chip_windows(i: int, chip: Chip) -> Iterator[tuple[_Pending, Any, np.ndarray]]:
            h, w = chip.valid.shape
            layout = window_layout(h, w, size, overlap)
            todo = [win for win in layout if chip.valid[win.toslices()].any()]
            p = _Pending(i, chip, np.zeros((len(classes), h, w), np.float32), np.zeros((h, w), np.float32), len(todo))
            if not todo:  # no valid pixel: nothing to classify
                finish(p)
            for win in todo:
                yield p, win, layout.weights(win, DEFAULT_FLOOR)

        batch: list[tuple[_Pending, Any, np.ndarray]] = []

        def run() -> None:
            x = torch.stack([runner.prepare(p.chip.features[(slice(None), *win.toslices())]) for p, win, _ in batch])
            t0 = time.perf_counter()
            probs = runner.finish(runner.run(x))
            summary.model_seconds += time.perf_counter() - t0
            for (p, win, weights), prob in zip(batch, probs, strict=True):
                rows, cols = win.toslices()
                p.scores[:, rows, cols] += prob * weights
                p.weight[rows, cols] += weights
                p.left -= 1
                if p.left == 0:
                    finish(p)
            batch.clear()

        for item in windows():
            shape = item[1].height, item[1].width
            if batch and (len(batch) == opts.batch_size or (batch[0][1].height, batch[0][1].width) != shape):
                run()
            batch.append(item)
        if batch:
            run()
    summary.seconds = time.perf_counter() - start
    return summary
