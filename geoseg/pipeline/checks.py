"""Checks of a pipeline against the catalog and the model registry, before any work is done."""

from __future__ import annotations

from pathlib import Path

from geoseg.config.catalog import Catalog
from geoseg.errors import ConfigError, GeosegError
from geoseg.pipeline.schema import Pipeline

__all__ = ["check_pipeline", "check_steps"]

_SEED_MAX = 2**32 - 1  # numpy and Lightning seeds


def check_pipeline(pipeline: Pipeline, catalog: Catalog, require_data: bool = True) -> None:
    """Fail early (one line naming the pipeline file) on what would fail hours into a run.

    Checks: the datasets exist (done when the catalog is loaded), their data folders are
    there, and they have classes to train on; the architecture, its encoder and its options
    exist; a local ``pretrained`` file exists.

    Args:
        pipeline: the validated pipeline.
        catalog: its catalog.
        require_data: also check that the datasets' data folders exist.

    Raises:
        CatalogError: a dataset's data is not available. ConfigError: with the pipeline file
            as path and the cause.
    """
    from geoseg.models import check_encoder, get_model_class

    source = pipeline.source
    for name in {pipeline.dataset, pipeline.steps.predict.dataset if pipeline.steps.predict else None} - {None}:
        if require_data:
            catalog.check_available(str(name))  # e.g. ../shared/data missing: say so before writing anything
    check_steps(pipeline, catalog, scene_sizes=require_data)
    train = pipeline.steps.train
    if train is None:
        return
    if not catalog.dataset(pipeline.dataset).classes:
        raise ConfigError(f"dataset {pipeline.dataset!r} has no classes to train on", path=source,
                          hint="list its classes (code, name, color) in the catalog")
    try:
        cls = get_model_class(train.model)
        check_encoder(train.encoder or cls.default_encoder)
        cls.Options.from_dict(train.model_kwargs())
    except GeosegError as err:
        raise ConfigError(f"steps.train: {err}", path=source) from None
    if isinstance(train.pretrained, Path) and not str(train.pretrained).startswith("torchgeo:"):
        weights = train.pretrained if train.pretrained.is_absolute() or source is None else source.parent / train.pretrained
        if not weights.exists():  # a weights file or a model bundle directory
            raise ConfigError("steps.train.pretrained: weights file not found", path=weights,
                              hint="give a local weights file (relative to the pipeline file), true or false")


def _refuse(pipeline: Pipeline, message: str, hint: str) -> ConfigError:
    return ConfigError(message, path=pipeline.source or "pipeline", hint=hint)


def _non_finite(value: object, key: str) -> str | None:
    """The key path of a NaN or infinite float in a step's parameters (pydantic accepts them)."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return f"{key} {value}"
    if isinstance(value, dict):
        return next((k for name, v in value.items() if (k := _non_finite(v, f"{key}.{name}"))), None)
    if isinstance(value, list | tuple):
        return next((k for i, v in enumerate(value) if (k := _non_finite(v, f"{key}[{i}]"))), None)
    return None


def _scene_size(catalog: Catalog, entry) -> tuple[int, int] | None:
    """``(height, width)`` of a catalog scene on its 10 m grid, from one file header (no pixel read).

    None when no header can be read cheaply: the tile step then reports the scene itself.
    """
    if entry.demo is not None:
        return entry.demo.size, entry.demo.size
    import rasterio

    if entry.path is None:  # a STAC item: its size is known once the item is read
        return None
    location = catalog.locate(entry.path)
    if not isinstance(location, Path):  # remote or /vsi: no network request before the run
        return None
    path = location
    if path.is_dir():
        import re

        band = re.compile(r"B(0[1-9]|1[0-2]|8A)")
        found = next((f for f in sorted(path.rglob("*")) if f.suffix.lower() in (".tif", ".tiff", ".jp2")
                      and band.search(f.stem.upper())), None)  # any band file: all cover the scene's extent
        if found is None:
            return None
        path = found
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None or ds.crs.is_geographic:
                return None  # not in metres: the tile step explains
            left, bottom, right, top = ds.bounds
    except Exception:  # unreadable: the tile step names the file
        return None
    return round(abs(top - bottom) / 10.0), round(abs(right - left) / 10.0)


def check_steps(pipeline: Pipeline, catalog: Catalog, scene_sizes: bool = True) -> None:
    """Check every step's parameters against each other and against the dataset, before any step runs.

    What a later stage would refuse hours into a run is refused here, naming the pipeline file
    and the key: tile ``overlap`` ≥ ``cube_size``, split fractions not summing to 1, a cube
    larger than every scene (scene sizes from one file header each), a split the train or
    evaluate step needs that gets no block, train ``target_size`` larger than the cubes,
    predict ``overlap`` ≥ the window, unknown predict ``scenes``, negative seeds, and NaN or
    infinite numbers.

    Raises:
        ConfigError: naming the pipeline file and the key path (``steps.predict.overlap``).
    """
    steps = pipeline.steps
    for name in steps.present():
        bad = _non_finite(getattr(steps, name).model_dump(mode="python"), f"steps.{name}")
        if bad is not None:
            raise _refuse(pipeline, f"{bad} is not a finite number", "give a finite value")
    tile, train, evaluate, predict = steps.tile, steps.train, steps.evaluate, steps.predict
    window = None  # the training window: predict's and export's default window
    if tile is not None:
        if tile.overlap >= tile.cube_size:
            raise _refuse(pipeline, f"steps.tile.overlap {tile.overlap} must be smaller than steps.tile.cube_size "
                                    f"{tile.cube_size}", f"e.g. overlap: {tile.cube_size // 8}")
        fractions = tuple(tile.split)
        if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
            raise _refuse(pipeline, f"steps.tile.split {list(fractions)} must be three fractions >= 0 summing to 1 "
                                    f"(they sum to {sum(fractions):g})", "e.g. split: [0.7, 0.15, 0.15] (train, val, test)")
        if not 0 <= tile.seed <= _SEED_MAX:
            raise _refuse(pipeline, f"steps.tile.seed {tile.seed} must be between 0 and {_SEED_MAX}", "e.g. seed: 0")
        window = tile.cube_size
        needed: dict[str, str] = {}
        if train is not None:
            needed[train.train_split] = "steps.train.train_split"
            needed[train.val_split] = "steps.train.val_split"
        if evaluate is not None:
            needed.setdefault(evaluate.split, "steps.evaluate.split")
        _check_tiling_fits(pipeline, catalog, tile, needed, scene_sizes)
    if train is not None:
        if not 0 <= train.seed <= _SEED_MAX:
            raise _refuse(pipeline, f"steps.train.seed {train.seed} must be between 0 and {_SEED_MAX}", "e.g. seed: 0")
        if train.target_size is not None:
            if tile is not None and train.target_mode == "crop" and train.target_size > tile.cube_size:
                raise _refuse(pipeline, f"steps.train.target_size {train.target_size} is larger than the cubes "
                                        f"(steps.tile.cube_size {tile.cube_size})",
                              f"use a target_size of at most {tile.cube_size}, or target_mode: resize")
            window = train.target_size
    if predict is not None:
        size, key = (predict.window, "steps.predict.window") if predict.window is not None else (
            window, "the training window (steps.train.target_size or steps.tile.cube_size)")
        if predict.overlap is not None and size is not None and predict.overlap >= size:
            raise _refuse(pipeline, f"steps.predict.overlap {predict.overlap} must be smaller than {key} {size}",
                          f"e.g. overlap: {size // 4}")
        if predict.scenes:
            name = predict.dataset or pipeline.dataset
            ids = [e.id for e in catalog.dataset(name).scenes]
            for wanted in predict.scenes:
                if wanted not in ids:
                    from geoseg.utils.closest import did_you_mean

                    raise _refuse(pipeline, f"steps.predict.scenes: dataset {name!r} has no scene {wanted!r}",
                                  did_you_mean(wanted, ids) or f"its scenes: {', '.join(ids)}")


def _check_tiling_fits(pipeline: Pipeline, catalog: Catalog, tile, needed: dict[str, str], scene_sizes: bool) -> None:
    """A cube must fit in some scene, and every split a later step reads must get at least one block."""
    from geoseg.tiling.layout import axis_slots
    from geoseg.tiling.split import _counts

    if not scene_sizes:
        return
    dataset = catalog.dataset(pipeline.dataset)
    found = [_scene_size(catalog, entry) for entry in dataset.scenes]
    sizes = [s for s in found if s is not None]
    if len(sizes) < len(found) or not sizes:
        return  # some header is unreadable: the tile step reports that scene
    cube = tile.cube_size
    if all(cube > min(h, w) for h, w in sizes):
        largest = max(sizes, key=lambda s: min(s))
        raise _refuse(pipeline, f"steps.tile.cube_size {cube} is larger than every scene of dataset "
                                f"{pipeline.dataset!r} (the largest is {largest[1]} x {largest[0]} px)",
                      f"use a cube_size of at most {min(largest)} px")
    stride = cube - tile.overlap
    blocks = 0
    for h, w in sizes:
        rows = {s.block for s in axis_slots(h, cube, stride, tile.split_block)}
        cols = {s.block for s in axis_slots(w, cube, stride, tile.split_block)}
        blocks += len(rows) * len(cols)
    counts = dict(zip(("train", "val", "test"), _counts(blocks, tuple(tile.split)), strict=True))
    for split, key in needed.items():
        if counts[split] == 0:
            raise _refuse(pipeline, f"{key} {split!r} gets no cubes: steps.tile makes {blocks} split block(s) "
                                    f"({', '.join(f'{k} {v}' for k, v in counts.items())}) with cube_size {cube} "
                                    f"and split_block {tile.split_block}",
                          "use a smaller cube_size or split_block, or give that split a larger fraction in steps.tile.split")
