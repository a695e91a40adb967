"""Training, evaluation and self-contained model bundles."""

from geoseg.train.bundle import BundleConfig, ModelBundle, Normalization, load_bundle, normalize, save_bundle

__all__ = ["BundleConfig", "ModelBundle", "Normalization", "load_bundle", "normalize", "save_bundle"]
