"""Checks of a pipeline against the catalog and the model registry, before any work is done."""

from __future__ import annotations

from pathlib import Path

from geoseg.config.catalog import Catalog
from geoseg.errors import ConfigError, GeosegError, ModelError
from geoseg.pipeline.schema import Pipeline

__all__ = ["check_pipeline", "check_encoder"]


def check_encoder(name: str) -> None:
    """Raise ModelError unless ``name`` is a timm model or a registered custom encoder (no download)."""
    import timm

    from geoseg.models import registered_encoders

    if name in registered_encoders() or timm.is_model(name):
        return
    import difflib

    close = difflib.get_close_matches(name, [*registered_encoders(), *timm.list_models()], n=3, cutoff=0.6)
    raise ModelError(f"unknown encoder {name!r}", hint=f"did you mean {', '.join(close)}?" if close
                     else "see timm.list_models() or geoseg.models.register_encoder")


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
    from geoseg.models import get_model_class

    source = pipeline.source
    for name in {pipeline.dataset, pipeline.steps.predict.dataset if pipeline.steps.predict else None} - {None}:
        if require_data:
            catalog.check_available(str(name))  # e.g. ../shared/data missing: say so before writing anything
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
    if isinstance(train.pretrained, Path):
        weights = train.pretrained if train.pretrained.is_absolute() or source is None else source.parent / train.pretrained
        if not weights.is_file():
            raise ConfigError("steps.train.pretrained: weights file not found", path=weights,
                              hint="give a local weights file (relative to the pipeline file), true or false")
