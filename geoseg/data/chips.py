"""Chips listed by split, read as a CubeStore: seed 001's data form for training and evaluation.

A chips folder (``--data-root``) holds the chips and their masks, split by CSV files or by
folders::

    DATA_ROOT/
      images/          chips: GeoTIFF or .npy/.npz of Sentinel-2 bands, or of the recipe's channels
      masks/           one class-code raster or array per chip (``mask/`` and ``labels/`` work too)
      train.csv        the chips of each split, one per row (val.csv, test.csv likewise)
      dataset.yaml     optional: recipe, classes, ignore_codes, scale, offset (as in data_catalog.yaml)

or, without CSV files, ``images/train/``, ``images/val/`` (``images/test/``) beside
``masks/train/``... A CSV row names the chip in a column ``image`` (also ``filename``,
``file``, ``name``, ``id``; else the first column), relative to ``images/`` or to the CSV's
folder, with or without its suffix, and optionally the mask in a column ``mask`` (else the file
of ``masks/`` with the chip's name or stem).

:class:`ChipStore` is a :class:`~geoseg.tiling.store.CubeStore` whose cubes are the chips:
:func:`geoseg.features.chips.read_chip` computes each chip's recipe channels exactly as the
tiler computes a scene's, labels become training indices through the class map
(:class:`~geoseg.io.labels.LabelMap`: a code outside it is a one-line error naming the mask
file), and ``stats`` holds the train split's valid-pixel mean/std. The datamodule, the
trainer and the evaluator then run unchanged. Chips must share one square size (they are
batched like cubes).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
from typing_extensions import override

from geoseg.config.catalog import ClassDef
from geoseg.config.schema import StrictModel, load_yaml
from geoseg.errors import (
    ConfigError,
    CorruptRasterError,
    EmptyAreaError,
    GeosegError,
    LabelError,
    MissingFileError,
)
from geoseg.features.chips import ARRAY_SUFFIXES, CHIP_SUFFIXES, chip_shape, load_array, read_chip
from geoseg.features.recipes import DEFAULT_RECIPE, Recipe, get_recipe
from geoseg.io.labels import LabelMap
from geoseg.io.raster import open_raster
from geoseg.tiling.stats import Moments, cube_moments
from geoseg.tiling.store import IGNORE_INDEX, SPLITS, CubeStore, Split
from geoseg.validity import valid_mask_numpy

__all__ = ["ChipEntry", "ChipList", "ChipDataset", "ChipStore", "chips_from_csv", "chips_of_root", "list_chip_files",
           "read_codes", "MASK_SUFFIXES", "CACHE_LIMIT"]

MASK_SUFFIXES = (".tif", ".tiff", ".png", ".npy", ".npz")
IMAGE_COLUMNS = ("image", "images", "image_path", "image_file", "img", "filename", "file_name", "file", "name", "id")
MASK_COLUMNS = ("mask", "masks", "mask_path", "mask_file", "label", "labels", "layer", "segmentation")
MASK_FOLDERS = ("masks", "mask", "labels")
CACHE_LIMIT = 512 * 1024**2  # chips read once are kept in memory up to this many bytes
# colours of classes inferred from the masks (no dataset.yaml): Esri/Tableau-like, distinct
_PALETTE = ("#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf", "#aec7e8", "#98df8a", "#ffbb78", "#ff9896", "#c5b0d5", "#c49c94")


class ChipDataset(StrictModel):
    """``DATA_ROOT/dataset.yaml``: what ``data_catalog.yaml`` says of a dataset, for a chips folder."""

    recipe: str = Field(DEFAULT_RECIPE, description="feature recipe computed from the chips' bands")
    classes: list[ClassDef] = Field(default_factory=list, description="class map (default: the codes in the masks)")
    ignore_codes: list[int] = Field(default_factory=lambda: [0], description="mask codes = unlabelled")
    scale: float | None = Field(None, gt=0, description="DN per unit reflectance (default 10000)")
    offset: float | None = Field(None, description="DN offset (default: metadata, else inferred per chip)")


@dataclass(frozen=True)
class ChipEntry:
    """One chip: its image file, its mask file (None: unlabelled) and its split."""

    image: Path
    mask: Path | None
    split: Split


@dataclass(frozen=True)
class ChipList:
    """Chips listed in a CSV (``geoseg evaluate --val-csv``), with their images and masks folders.

    Attributes:
        csv: the CSV listing the chips.
        images: the folder of the chips (None: ``images/`` beside the CSV).
        masks: the folder of the masks (None: ``masks/`` or ``mask/`` beside the CSV).
    """

    csv: Path
    images: Path | None = None
    masks: Path | None = None

    def inputs(self) -> list[Path]:
        """The files and folders read (outputs must not land on them)."""
        return [p for p in (self.csv, self.images, self.masks) if p is not None]

    def open(self, split: Split, *, recipe: str | Recipe, classes: Sequence[ClassDef],
             scale: float | None = None) -> ChipStore:
        """The chips as a :class:`ChipStore` whose ``split`` holds them all (a model's recipe and classes)."""
        return ChipStore.from_chips(self.csv, chips_from_csv(self.csv, self.images, self.masks, split),
                                    recipe=recipe, classes=classes, scale=scale)


def list_chip_files(folder: str | Path, suffixes: Sequence[str] = CHIP_SUFFIXES) -> list[Path]:
    """The chip files directly inside ``folder`` (sorted by name; hidden files skipped)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes)


def _find(folder: Path, name: str, suffixes: Sequence[str], extra: Sequence[Path] = ()) -> Path | None:
    """``name`` inside ``folder`` (or the ``extra`` folders), as given or with one of ``suffixes``."""
    given = Path(name)
    if given.is_absolute():
        return given if given.is_file() else None
    for base in (folder, *extra):
        candidate = base / given
        if candidate.is_file():
            return candidate
        stem = candidate.name if candidate.suffix.lower() not in suffixes else candidate.stem
        for suffix in suffixes:
            other = candidate.with_name(stem + suffix)
            if other.is_file():
                return other
    return None


def _mask_for(image: Path, masks: Path) -> Path | None:
    """The mask of ``image`` in ``masks``: the same file name, or the same stem with a mask suffix."""
    return _find(masks, image.name, MASK_SUFFIXES) or _find(masks, image.stem, MASK_SUFFIXES)


def chips_from_csv(csv_path: str | Path, images: str | Path | None = None, masks: str | Path | None = None,
                   split: Split = "train") -> list[ChipEntry]:
    """The chips listed in ``csv_path`` (rules in the module docstring), all in ``split``.

    Args:
        csv_path: the CSV listing the chips (a header row is optional).
        images: the folder of the chips (default: ``images/`` beside the CSV).
        masks: the folder of the masks (default: ``masks/`` or ``mask/`` beside the CSV); a
            folder that does not exist means unlabelled chips.

    Raises:
        MissingFileError: the CSV, a chip or a mask it names does not exist.
        ConfigError: the CSV lists no chip.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise MissingFileError("CSV file does not exist", path=csv_path, hint="check the path of the chip list")
    root = csv_path.parent
    images = Path(images) if images is not None else root / "images"
    masks = Path(masks) if masks is not None else next((root / m for m in MASK_FOLDERS if (root / m).is_dir()), None)
    if not images.is_dir():
        raise MissingFileError("folder of chip images does not exist", path=images,
                               hint="put the chips in images/ beside the CSV, or give --image-root")
    try:
        with open(csv_path, newline="") as fh:
            rows = [[cell.strip() for cell in row] for row in csv.reader(fh) if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"cannot read the CSV ({err})", path=csv_path, hint="a text file, one chip per row") from None
    if not rows:
        raise ConfigError("the CSV lists no chip", path=csv_path, hint="one chip file name per row")
    header = [c.lower() for c in rows[0]]
    first = rows[0][0]  # a header names columns; a first row naming a missing chip file is a data row (refused)
    has_header = (any(c in IMAGE_COLUMNS or c in MASK_COLUMNS for c in header)
                  or (_find(images, first, CHIP_SUFFIXES, (root,)) is None and Path(first).suffix.lower()
                      not in CHIP_SUFFIXES))
    image_col = next((header.index(c) for c in IMAGE_COLUMNS if has_header and c in header), 0)
    mask_col = next((header.index(c) for c in MASK_COLUMNS if has_header and c in header), None)
    out = []
    for line, row in enumerate(rows[1:] if has_header else rows, start=2 if has_header else 1):
        name = row[image_col] if image_col < len(row) else ""
        image = _find(images, name, CHIP_SUFFIXES, (root,)) if name else None
        if image is None:
            raise MissingFileError(f"line {line}: chip {name!r} not found in {images}", path=csv_path,
                                   hint="list chip files of the images folder (with or without suffix)")
        mask = None
        if mask_col is not None and mask_col < len(row) and row[mask_col]:
            mask = _find(masks or root, row[mask_col], MASK_SUFFIXES, (root,))
            if mask is None:
                raise MissingFileError(f"line {line}: mask {row[mask_col]!r} not found in {masks or root}",
                                       path=csv_path, hint="list mask files of the masks folder")
        elif masks is not None:
            mask = _mask_for(image, masks)
            if mask is None:
                raise MissingFileError(f"no mask for chip {image.name} (line {line} of {csv_path.name})", path=masks,
                                       hint=f"add masks/{image.stem}.tif (or .png/.npy), or a mask column to the CSV")
        out.append(ChipEntry(image, mask, split))
    return out


def chips_of_root(root: str | Path) -> list[ChipEntry]:
    """Every chip of a chips folder: ``train.csv``/``val.csv``/``test.csv``, else split folders.

    Raises:
        MissingFileError: no such folder, no images folder, a listed chip or mask is missing.
        EmptyAreaError: no training chip.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError("--data-root folder does not exist", path=root,
                               hint="a folder with images/, masks/ and train.csv, val.csv")
    images = root / "images"
    masks = next((root / m for m in MASK_FOLDERS if (root / m).is_dir()), None)
    chips: list[ChipEntry] = []
    csvs = {s: root / f"{s}.csv" for s in SPLITS if (root / f"{s}.csv").is_file()}
    if csvs:
        for split, path in csvs.items():
            chips += chips_from_csv(path, images, masks, split)
    elif images.is_dir():
        for split in SPLITS:
            folder = images / split
            if not folder.is_dir():
                continue
            for image in list_chip_files(folder):
                mask = _mask_for(image, masks / split) if masks is not None else None
                if masks is not None and mask is None:
                    raise MissingFileError(f"no mask for chip {image.name}", path=masks / split,
                                           hint=f"add {masks.name}/{split}/{image.stem}.tif (or .png/.npy)")
                chips.append(ChipEntry(image, mask, split))
    else:
        raise MissingFileError("no images/ folder and no train.csv", path=root,
                               hint="a chips folder holds images/, masks/ and train.csv, val.csv "
                                    "(or images/train/, images/val/)")
    if not any(c.split == "train" for c in chips):
        raise EmptyAreaError("no training chip (train.csv or images/train/)", path=root,
                             hint="list the training chips in train.csv, the validation chips in val.csv")
    return chips


def read_codes(path: str | Path) -> np.ndarray:
    """The class codes of a mask file as int64 ``(H, W)`` (a one-band raster or an array).

    Raises:
        LabelError: several bands, or values that are not integer codes.
        MissingFileError, CorruptRasterError: no such file, unreadable.
    """
    path = Path(path)
    if path.suffix.lower() in ARRAY_SUFFIXES:
        arr = load_array(path, key="mask")
        if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
            arr = arr.reshape(arr.shape[1:] if arr.shape[0] == 1 else arr.shape[:2])
    else:
        with open_raster(path) as ds:
            if ds.count != 1:
                raise LabelError(f"a mask of {ds.count} bands", path=path,
                                 hint="a mask holds one band of class codes (colour-coded masks must be converted)")
            try:
                arr = ds.read(1)
            except Exception as err:  # noqa: BLE001 - GDAL's read errors have several types
                raise CorruptRasterError(f"cannot read the mask ({str(err).splitlines()[0][:120]})", path=path,
                                         hint="re-export it") from None
    if arr.ndim != 2:
        raise LabelError(f"a mask of shape {arr.shape}", path=path, hint="a mask holds one (H, W) plane of class codes")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.bool_) or (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
            arr = arr.astype(np.int64)
        else:
            raise LabelError(f"mask values are not class codes (dtype {arr.dtype}, non-integer values)", path=path,
                             hint="masks hold integer class codes")
    return arr.astype(np.int64, copy=False)


def _inferred_classes(codes: Iterable[int], ignore: Sequence[int], source: Path) -> list[ClassDef]:
    found = sorted(set(int(c) for c in codes) - set(ignore))
    bad = [c for c in found if not 1 <= c <= 254]
    if bad:
        raise LabelError(f"mask codes {bad[:10]} cannot be class codes (1-254; 0 = unlabelled)", path=source,
                         hint="recode the masks, or list the classes and ignore_codes in dataset.yaml")
    if not found:
        raise LabelError("the masks hold no class code (only unlabelled pixels)", path=source,
                         hint="check the masks: 0 means unlabelled")
    return [ClassDef(code=c, name=f"class {c}", color=_PALETTE[i % len(_PALETTE)]) for i, c in enumerate(found)]


class ChipStore(CubeStore):
    """Chips as the cubes of a :class:`~geoseg.tiling.store.CubeStore` (module docstring).

    Build it with :meth:`open_root` (a chips folder, for training) or :meth:`from_chips`.
    """

    def __init__(self, path: Path, chips: Sequence[ChipEntry], *, recipe: Recipe, label_map: LabelMap,
                 classes: Sequence[ClassDef], size: int, counts: np.ndarray, scale: float | None = None,
                 offset: float | None = None):
        manifest = {
            "num_cubes": len(chips), "cube_size": size, "recipe": recipe.to_dict(), "complete": True,
            "classes": [{"index": i, "code": c.code, "name": c.name, "color": c.color} for i, c in enumerate(classes)],
            "has_labels": all(c.mask is not None for c in chips), "source": "chips",
        }
        super().__init__(path, manifest, {"channel_names": list(recipe.channel_names)})
        self.chips = tuple(chips)
        self.label_map = label_map
        self.scale, self.offset = scale, offset
        self._counts = counts
        self._recipe = recipe
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        self._cached_bytes = 0
        self._valid_fraction = np.full(len(chips), np.nan)  # known once a chip was read
        self._sources: dict[int, tuple[str, float | None, str, float]] = {}  # chip → (level, offset, rule, scale)

    # ------------------------------------------------------------------ building
    @classmethod
    def open_root(cls, root: str | Path, *, with_stats: bool = True) -> ChipStore:
        """The chips folder ``root`` (``dataset.yaml`` optional), with the train split's statistics."""
        root = Path(root)
        chips = chips_of_root(root)
        spec = load_yaml(root / "dataset.yaml", ChipDataset) if (root / "dataset.yaml").is_file() else ChipDataset()
        store = cls.from_chips(root, chips, recipe=spec.recipe, classes=spec.classes or None,
                               ignore_codes=spec.ignore_codes, scale=spec.scale, offset=spec.offset)
        if with_stats:
            store.compute_stats()
        return store

    @classmethod
    def from_chips(cls, path: str | Path, chips: Sequence[ChipEntry], *, recipe: str | Recipe = DEFAULT_RECIPE,
                   classes: Sequence[ClassDef] | None = None, ignore_codes: Sequence[int] = (0,),
                   scale: float | None = None, offset: float | None = None) -> ChipStore:
        """Chips with a class map (None: the codes found in the masks), checked before any training.

        Every mask is read once: its codes must be in the class map (or ``ignore_codes``) and
        its shape the chip's; the chips must share one square size.

        Raises:
            LabelError: a code outside the class map (naming the mask file), a mask of another shape.
            ConfigError: chips of different or non-square sizes.
        """
        recipe = get_recipe(recipe)
        path = Path(path)
        if not chips:
            raise EmptyAreaError("no chip to read", path=path, hint="list chips in the CSV or the images folder")
        size: int | None = None
        first: Path | None = None
        codes: list[tuple[ChipEntry, np.ndarray, np.ndarray]] = []
        for chip in chips:
            h, w = chip_shape(chip.image, recipe)
            if h != w or (size is not None and h != size):
                where = f"{first.name} is {size} x {size} px" if first is not None else "chips are batched as squares"
                raise ConfigError(f"chip of {h} x {w} px; {where}", path=chip.image,
                                  hint="cut every chip to one square size (e.g. 256 x 256)")
            size, first = h, first or chip.image
            if chip.mask is not None:
                values = read_codes(chip.mask)
                if values.shape != (h, w):
                    raise LabelError(f"mask of {values.shape[0]} x {values.shape[1]} px for a chip of {h} x {w} px "
                                     f"({chip.image.name})", path=chip.mask, hint="a mask has its chip's size")
                found, n = np.unique(values, return_counts=True)
                codes.append((chip, found, n))
        assert size is not None
        if classes is None:
            classes = _inferred_classes((int(c) for _, f, _ in codes for c in f), ignore_codes, path)
        label_map = LabelMap(tuple(c.code for c in classes), tuple(ignore_codes), tuple(c.name for c in classes))
        counts = np.zeros((len(chips), len(classes)), dtype=np.int64)
        position = {c.code: i for i, c in enumerate(classes)}
        row = {id(c): i for i, c in enumerate(chips)}
        for chip, found, n in codes:
            assert chip.mask is not None
            unknown = label_map.unknown(found)
            if unknown:
                raise LabelError(f"label codes {unknown[:10]} are not in the class map {list(label_map.codes)}",
                                 path=chip.mask, hint="recode the mask, or add the codes to the classes "
                                 "(dataset.yaml) or to ignore_codes; a model's class map is fixed")
            for code, k in zip(found, n, strict=True):
                if int(code) in position:
                    counts[row[id(chip)], position[int(code)]] = k
        return cls(path, chips, recipe=recipe, label_map=label_map, classes=list(classes), size=size, counts=counts,
                   scale=scale, offset=offset)

    def compute_stats(self, split: Split = "train") -> dict[str, Any]:
        """Mean/std of ``split``'s valid pixels (the normalisation of a training run), into ``stats``."""
        total = Moments.empty(self.num_channels)
        for i in self.ids(split):
            cube = self.read_cube(int(i))
            total = total.merge(cube_moments(cube, valid_mask_numpy(cube, self._recipe.num_mask_channels, 0)[0]))
        block = {"count": total.count, "mean": total.mean.tolist(), "std": total.std.tolist()}
        self.stats = {"channel_names": list(self._recipe.channel_names), "mean": block["mean"], "std": block["std"],
                      "count": total.count, "by_split": {split: block}}
        # the scenes' record of a tiled store, per kind of chip (the model bundle's training domain)
        kinds: dict[tuple[str, float | None, str, float], int] = {}
        for i in self.ids(split):
            key = self._sources[int(i)]
            kinds[key] = kinds.get(key, 0) + 1
        self.manifest["sources"] = [
            {"scene_id": f"{n} {split} chip{'s' if n > 1 else ''}", "level": level, "offset": offset,
             "offset_rule": rule, "scale": scale} for (level, offset, rule, scale), n in kinds.items()]
        self.__dict__.pop("index", None)  # valid fractions are known now
        return self.stats

    # ------------------------------------------------------------------ CubeStore's read API
    def __repr__(self) -> str:
        return f"ChipStore({str(self.path)!r}, chips={len(self)}, size={self.cube_size})"

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_cache"], state["_cached_bytes"] = {}, 0  # DataLoader workers read their own
        return state

    @property
    @override
    def recipe(self) -> Recipe:
        return self._recipe

    @cached_property
    def index(self):
        """One row per chip: ``cube_id``, ``split``, ``image``, ``mask`` and ``count_<code>``."""
        import pandas as pd

        data: dict[str, Any] = {
            "cube_id": np.arange(len(self.chips), dtype=np.int64),
            "split": [c.split for c in self.chips],
            "image": [str(c.image) for c in self.chips],
            "mask": [None if c.mask is None else str(c.mask) for c in self.chips],
            "valid_fraction": self._valid_fraction,
        }
        for k, c in enumerate(self.classes):
            data[f"count_{c.code}"] = self._counts[:, k]
        return pd.DataFrame(data)

    @override
    def ids(self, split: Split | None = None) -> np.ndarray:
        if split is None:
            return np.arange(len(self.chips), dtype=np.int64)
        if split not in SPLITS:
            raise GeosegError(f"unknown split {split!r}", hint=f"use one of {', '.join(SPLITS)}")
        return np.array([i for i, c in enumerate(self.chips) if c.split == split], dtype=np.int64)

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        i = self._check(i)
        hit = self._cache.get(i)
        if hit is not None:
            return hit
        chip = self.chips[i]
        read = read_chip(chip.image, self._recipe, scale=self.scale, offset=self.offset)
        if read.features.shape[1:] != (self.cube_size, self.cube_size):
            raise ConfigError(f"chip reads as {read.features.shape[1]} x {read.features.shape[2]} px on the 10 m grid, "
                              f"not {self.cube_size} x {self.cube_size}", path=chip.image,
                              hint="chips of Sentinel-2 bands at 10 m, one size for all")
        self._valid_fraction[i] = float(read.valid.mean())
        self._sources[i] = (read.level, read.offset, read.offset_rule, read.scale)
        labels = None
        if chip.mask is not None:
            labels = self.label_map.to_indices(read_codes(chip.mask), str(chip.mask))
            labels[~read.valid] = IGNORE_INDEX
        nbytes = read.features.nbytes + (0 if labels is None else labels.nbytes)
        if self._cached_bytes + nbytes <= CACHE_LIMIT:
            self._cache[i] = (read.features, labels)
            self._cached_bytes += nbytes
        return read.features, labels

    def read_cube(self, i: int) -> np.ndarray:
        """The recipe's channels of chip ``i``, float32 ``(C, H, W)`` (invalid pixels 0)."""
        return self._read(i)[0]

    def read_label(self, i: int) -> np.ndarray:
        """The labels of chip ``i`` as uint8 training indices (255 = ignore, invalid pixels too)."""
        labels = self._read(i)[1]
        if labels is None:
            raise GeosegError("this chip has no mask", path=self.chips[self._check(i)].image,
                              hint="give every chip a mask (masks/ folder or a mask column in the CSV)")
        return labels
