"""One ``(N, C+1, H, W)`` array read as a CubeStore: seed 000's data form for training and evaluation.

The array holds N cubes of C feature channels followed by one label plane, exactly what
``geoseg cubes export --with-labels`` writes: the label as a float class index (0, 1, …),
255 (or NaN) = ignore. It is a ``.npy`` file (memory-mapped, read cube by cube) or an ``.npz``
holding it as ``cubes`` (else ``data``, else its only 4-D array) and optionally ``split``.

What the array does not say comes from an optional YAML beside it, ``<name>.yaml``
(``cubes.npy`` → ``cubes.yaml``; keys of :class:`ArrayDataset`):

* ``recipe``: the feature recipe of the C channels (default: the built-in recipe with C
  channels, ``s2_24`` for 24). Predicting on a scene computes these channels from its bands.
* ``classes``: the class map in label order, as in ``data_catalog.yaml`` (code, name, colour).
  Default: one class per label value 0…max, label ``i`` → code ``i + 1`` (0 is no-data in the
  output rasters), named ``class i``.
* the split: a ``split`` array of the ``.npz`` or a ``split`` list in the YAML (one
  ``train``/``val``/``test`` — or 0/1/2 — per cube); otherwise a seeded random split of whole
  cubes, ``val_fraction`` (default 0.2) and ``test_fraction`` (default 0) with ``split_seed``
  (default 0). The rule is a property of the data, not of a run: ``geoseg evaluate`` on the
  same array finds the same validation cubes. Cubes exported from overlapping or neighbouring
  windows are correlated; give their store's split (``CubeStore.ids``) as a ``split`` array
  to keep validation cubes away from training ones.

A pixel is valid when its leading ``recipe.num_mask_channels`` channels are not all 0 (the one
rule, :mod:`geoseg.validity`); invalid pixels read as 0 in every channel and their labels as
255. Normalisation statistics (valid-pixel mean/std per split) and class counts are computed
from the array when it is opened, in one pass, which also checks every label and feature.
:class:`ArrayStore` is a :class:`~geoseg.tiling.store.CubeStore`, so the datamodule, the
trainer and the evaluator use it unchanged; the model bundle is written as for a store.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
from typing_extensions import override

from geoseg.config.catalog import ClassDef
from geoseg.config.schema import StrictModel, load_yaml
from geoseg.errors import ConfigError, CorruptStoreError, GeosegError, LabelError, MissingFileError
from geoseg.features.recipes import DEFAULT_RECIPE, Recipe, get_recipe, list_recipes
from geoseg.tiling.stats import Moments, cube_moments
from geoseg.tiling.store import IGNORE_INDEX, SPLITS, CubeStore, Split
from geoseg.validity import valid_mask_numpy

__all__ = ["ARRAY_SUFFIXES", "ArrayDataset", "ArrayStore", "is_array_file", "sidecar_path"]

ARRAY_SUFFIXES = (".npy", ".npz")
ARRAY_KEYS = ("cubes", "data")  # the array's name in an .npz (else its only 4-D array)
# colours of classes named by default (no classes in the YAML)
_PALETTE = ("#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf", "#aec7e8", "#98df8a", "#ffbb78", "#ff9896", "#c5b0d5", "#c49c94")
_CHUNK = 64  # cubes checked per step when the array is opened


class ArrayDataset(StrictModel):
    """``<name>.yaml`` beside an array: what the array itself does not say (module docstring)."""

    recipe: str | None = Field(None, description="feature recipe of the channels (default: the one with C channels)")
    classes: list[ClassDef] | None = Field(None, description="class map in label order (default: label i -> code i+1)")
    split: list[Split | int] | None = Field(None, description="split of every cube (train/val/test or 0/1/2)")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="validation cubes of the seeded random split")
    test_fraction: float = Field(0.0, ge=0, lt=1, description="test cubes of the seeded random split")
    split_seed: int = Field(0, ge=0, description="seed of the random split")


def is_array_file(path: str | Path | CubeStore) -> bool:
    """True for a path naming a ``.npy``/``.npz`` file (an array source, not a CubeStore)."""
    return isinstance(path, str | Path) and Path(path).suffix.lower() in ARRAY_SUFFIXES


def sidecar_path(path: str | Path) -> Path:
    """The optional YAML of an array: ``cubes.npy`` → ``cubes.yaml``."""
    return Path(path).with_suffix(".yaml")


def _load(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The (memory-mapped for .npy) 4-D array of ``path`` and the .npz ``split`` array, if any."""
    if not path.is_file():
        raise MissingFileError("array file does not exist", path=path,
                               hint="write it with `geoseg cubes export STORE --out cubes.npy --with-labels` or numpy.save")
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False), None
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files)
            key = next((k for k in ARRAY_KEYS if k in names), None)
            if key is None:
                arrays = [k for k in names if k != "split" and data[k].ndim == 4]
                key = arrays[0] if len(arrays) == 1 else None
            if key is None:
                raise CorruptStoreError(f"the .npz holds {', '.join(names[:6]) or 'no arrays'}: none is the "
                                        f"(N, C+1, H, W) array", path=path, hint="save it as 'cubes'")
            split = np.asarray(data["split"]) if "split" in names else None
            return np.asarray(data[key]), split
    except CorruptStoreError:
        raise
    except (OSError, ValueError, EOFError) as err:
        why = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise CorruptStoreError(f"not a readable numpy array ({why})", path=path,
                                hint="write it with numpy.save / numpy.savez, without object arrays "
                                     "(a split as np.asarray(split, dtype=str))") from None


def _recipe_for(channels: int, name: str | None, path: Path) -> Recipe:
    if name is not None:
        recipe = get_recipe(name)
        if recipe.num_channels != channels:
            raise ConfigError(f"recipe {name!r} has {recipe.num_channels} channels, the array {channels} "
                              f"(+ the label plane)", path=path, hint="name the array's recipe in its YAML")
        return recipe
    matches = [r for r in list_recipes() if get_recipe(r).num_channels == channels]
    if DEFAULT_RECIPE in matches:
        return get_recipe(DEFAULT_RECIPE)
    if len(matches) == 1:
        return get_recipe(matches[0])
    known = ", ".join(f"{r} ({get_recipe(r).num_channels})" for r in list_recipes())
    raise ConfigError(f"{channels} feature channels (+ the label plane) match no recipe: {known}", path=path,
                      hint=f"the last channel must be the labels; name the recipe in {sidecar_path(path).name}")


def _splits(n: int, given: np.ndarray | list | None, spec: ArrayDataset, path: Path) -> tuple[list[Split], dict]:
    """One split per cube, and the rule as recorded in the manifest."""
    if given is not None:
        values = list(given) if isinstance(given, list) else np.asarray(given).reshape(-1).tolist()
        if len(values) != n:
            raise ConfigError(f"the split lists {len(values)} cubes, the array has {n}", path=path,
                              hint="one train/val/test (or 0/1/2) per cube")
        out: list[Split] = []
        for v in values:
            v = v.decode() if isinstance(v, bytes) else v
            s = SPLITS[v] if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(SPLITS) else v
            if s not in SPLITS:
                raise ConfigError(f"split value {v!r} is not train/val/test (or 0/1/2)", path=path,
                                  hint="one train/val/test (or 0/1/2) per cube")
            out.append(s)
        return out, {"rule": "given"}
    order = np.random.default_rng(spec.split_seed).permutation(n)
    n_val = round(n * spec.val_fraction)
    n_test = round(n * spec.test_fraction)
    if spec.val_fraction > 0 and n >= 2:
        n_val = max(1, n_val)
    if n - n_val - n_test < 1:
        raise ConfigError(f"{n} cubes leave no training cube with val_fraction {spec.val_fraction} and "
                          f"test_fraction {spec.test_fraction}", path=path, hint="use smaller fractions")
    chosen: list[Split] = ["train"] * n
    for k in order[:n_val]:
        chosen[int(k)] = "val"
    for k in order[n_val:n_val + n_test]:
        chosen[int(k)] = "test"
    rule = {"rule": "random", "val_fraction": spec.val_fraction, "test_fraction": spec.test_fraction,
            "seed": spec.split_seed}
    return chosen, rule


class ArrayStore(CubeStore):
    """An ``(N, C+1, H, W)`` array as the cubes of a :class:`~geoseg.tiling.store.CubeStore` (module docstring).

    Open it with :meth:`open`; ``CubeDataModule("cubes.npy")`` and ``geoseg train cubes.npy`` do.
    """

    def __init__(self, path: Path, manifest: dict, stats: dict, splits: list[Split], counts: np.ndarray,
                 valid_fractions: np.ndarray, data: np.ndarray | None = None) -> None:
        super().__init__(path, manifest, stats)
        self.splits = splits
        self._counts = counts
        self._valid_fractions = valid_fractions
        self._data = data

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> ArrayStore:
        """Open the array at ``path`` (its YAML too) and compute statistics and class counts.

        Args:
            path: A ``.npy`` or ``.npz`` file.
            verify: Unused (every cube is checked while the statistics are computed).

        Raises:
            MissingFileError: No such file.
            CorruptStoreError: Not a readable numpy array, or not 4-D.
            ConfigError: Non-square cubes, no recipe for the channel count, a bad split,
                non-finite features at valid pixels.
            LabelError: Label values that are not class indices (0…254, 255 = ignore) or
                outside the YAML's classes.
        """
        path = Path(path)
        data, given_split = _load(path)
        yaml_file = sidecar_path(path)
        spec = load_yaml(yaml_file, ArrayDataset) if yaml_file.is_file() else ArrayDataset()
        if data.ndim != 4 or data.shape[1] < 2:
            raise CorruptStoreError(f"an array of shape {data.shape}, not (N, C+1, H, W)", path=path,
                                    hint="cubes, then channels with the label plane last, then rows and columns")
        n, c1, h, w = (int(v) for v in data.shape)
        if h != w:
            raise ConfigError(f"cubes of {h} x {w} px; training batches square cubes", path=path,
                              hint="cut the cubes to squares (e.g. 256 x 256)")
        if n == 0:
            raise CorruptStoreError("the array holds no cube", path=path, hint="export a split that has cubes")
        recipe = _recipe_for(c1 - 1, spec.recipe, path)
        splits, rule = _splits(n, given_split if given_split is not None else spec.split, spec, path)
        scan = _scan(data, recipe, splits, path, None if spec.classes is None else len(spec.classes))
        classes = spec.classes or [ClassDef(code=i + 1, name=f"class {i}", color=_PALETTE[i % len(_PALETTE)])
                                   for i in range(scan.num_classes)]
        counts = scan.counts[:, : len(classes)]
        manifest = {
            "num_cubes": n, "cube_size": h, "recipe": recipe.to_dict(), "complete": True, "has_labels": True,
            "classes": [{"index": i, "code": k.code, "name": k.name, "color": k.color} for i, k in enumerate(classes)],
            "dataset": path.stem, "source": "array", "split": rule,
            "splits": {s: splits.count(s) for s in SPLITS},
        }

        def block(m: Moments) -> dict:
            return {"mean": m.mean.tolist(), "std": m.std.tolist(), "count": int(m.count)}

        stats = {
            "channel_names": list(recipe.channel_names), **block(scan.total),
            "by_split": {s: block(scan.per_split[s]) for s in SPLITS},
            "class_counts": {str(k.code): int(v) for k, v in zip(classes, counts.sum(axis=0), strict=True)},
            "note": "population mean/std over valid pixels, computed from the array when it was opened",
        }
        return cls(path, manifest, stats, splits, counts, scan.valid_fractions,
                   data if path.suffix.lower() == ".npz" else None)

    # ------------------------------------------------------------------ CubeStore's read API
    def __repr__(self) -> str:
        return f"ArrayStore({str(self.path)!r}, cubes={len(self)}, size={self.cube_size}, channels={self.num_channels})"

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_data"] = None  # DataLoader workers map (or load) the file themselves
        return state

    @property
    def data(self) -> np.ndarray:
        """The whole ``(N, C+1, H, W)`` array (memory-mapped for .npy)."""
        if self._data is None:
            self._data = _load(self.path)[0]
        return self._data

    @cached_property
    def index(self) -> Any:
        """One row per cube: ``cube_id``, ``split``, ``valid_fraction`` and ``count_<code>``."""
        import pandas as pd

        table: dict[str, Any] = {"cube_id": np.arange(len(self), dtype=np.int64), "split": list(self.splits),
                                 "valid_fraction": self._valid_fractions}
        for k, cls in enumerate(self.classes):
            table[f"count_{cls.code}"] = self._counts[:, k]
        return pd.DataFrame(table)

    @override
    def ids(self, split: Split | None = None) -> np.ndarray:
        if split is None:
            return np.arange(len(self), dtype=np.int64)
        if split not in SPLITS:
            raise GeosegError(f"unknown split {split!r}", hint=f"use one of {', '.join(SPLITS)}")
        return np.array([i for i, s in enumerate(self.splits) if s == split], dtype=np.int64)

    def _cube(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        cube = np.array(self.data[self._check(i), :-1], dtype=np.float32)
        valid = valid_mask_numpy(cube, self.recipe.num_mask_channels, 0)[0]
        np.copyto(cube, np.float32(0), where=~valid[None])
        return cube, valid

    def read_cube(self, i: int) -> np.ndarray:
        """Cube ``i`` as float32 ``(C, H, W)``; invalid pixels are 0 in every channel."""
        return self._cube(i)[0]

    def read_label(self, i: int) -> np.ndarray:
        """Labels of cube ``i`` as uint8 ``(H, W)`` training indices; 255 = ignore (invalid pixels too)."""
        valid = self._cube(i)[1]
        return _labels(np.asarray(self.data[i, -1]), valid)


def _labels(plane: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """A float label plane as uint8 indices: NaN and invalid pixels → 255 (values checked on opening)."""
    out = np.where(np.isfinite(plane), plane, IGNORE_INDEX).astype(np.uint8)
    out[~valid] = IGNORE_INDEX
    return out


class _Scan:
    """What one pass over the array found: moments per split, class counts, valid fractions."""

    def __init__(self, channels: int, n: int) -> None:
        self.total = Moments.empty(channels)
        self.per_split = {s: Moments.empty(channels) for s in SPLITS}
        self.counts = np.zeros((n, 255), np.int64)
        self.valid_fractions = np.zeros(n, np.float64)
        self.num_classes = 0


def _scan(data: np.ndarray, recipe: Recipe, splits: list[Split], path: Path, num_classes: int | None) -> _Scan:
    """Check every cube and label plane of ``data``; statistics of valid pixels per split.

    Raises:
        ConfigError: Non-finite features at valid pixels.
        LabelError: Label values that are not indices, or not below ``num_classes``.
    """
    n, channels = data.shape[0], data.shape[1] - 1
    scan = _Scan(channels, n)
    mask_channels = recipe.num_mask_channels
    for start in range(0, n, _CHUNK):
        chunk = np.asarray(data[start:start + _CHUNK])
        for j in range(chunk.shape[0]):
            i = start + j
            cube = np.array(chunk[j, :-1], dtype=np.float32)
            valid = valid_mask_numpy(cube, mask_channels, 0)[0]
            np.copyto(cube, np.float32(0), where=~valid[None])
            if not np.isfinite(cube).all():
                bad = int(np.flatnonzero(~np.isfinite(cube).all(axis=(1, 2)))[0])
                raise ConfigError(f"cube {i}, channel {recipe.channel_names[bad]}: non-finite values at valid pixels",
                                  path=path, hint="write invalid pixels as 0 in the mask channels, "
                                                  "and finite values elsewhere")
            m = cube_moments(cube, valid)
            scan.total = scan.total.merge(m)
            scan.per_split[splits[i]] = scan.per_split[splits[i]].merge(m)
            scan.valid_fractions[i] = float(valid.mean())
            plane = np.asarray(chunk[j, -1], dtype=np.float64)
            finite = plane[np.isfinite(plane)]
            wrong = finite[(finite != np.round(finite)) | (finite < 0) | ((finite > 254) & (finite != IGNORE_INDEX))]
            if wrong.size:
                raise LabelError(f"cube {i}: label value {wrong[0]:g} is not a class index (0-254; 255 or NaN = "
                                 f"ignore)", path=path, hint="the last channel must hold the labels as class indices")
            labels = _labels(plane, valid)
            scan.counts[i] = np.bincount(labels.reshape(-1), minlength=256)[:255]
    found = np.flatnonzero(scan.counts.sum(axis=0))
    highest = int(found[-1]) + 1 if found.size else 0
    if num_classes is not None and highest > num_classes:
        raise LabelError(f"label value {highest - 1} but the YAML lists {num_classes} classes", path=path,
                         hint="list one class per label value, in label order")
    if num_classes is None and highest == 0:
        raise LabelError("the label plane holds no labelled pixel (only 255 / NaN or invalid pixels)", path=path,
                         hint="the last channel must hold the labels as class indices")
    scan.num_classes = num_classes if num_classes is not None else highest
    return scan
