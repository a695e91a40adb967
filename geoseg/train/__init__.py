"""Training, evaluation and self-contained model bundles.

>>> from geoseg.train import TrainConfig, train, evaluate
>>> result = train(TrainConfig(cubes="cubes", out="model", model="unet3plus", encoder="resnet18"))
>>> evaluate(result.best, "cubes", "eval", split="test", save_examples=4)
"""

from geoseg.train.bundle import (
    BundleConfig,
    ModelBundle,
    Normalization,
    load_bundle,
    normalize,
    save_bundle,
)
from geoseg.train.config import TrainConfig, load_train_config
from geoseg.train.evaluate import EvalResult, evaluate
from geoseg.train.losses import SegmentationLoss, class_weights_from_counts
from geoseg.train.metrics import Scores, confusion_scores
from geoseg.train.module import SegmentationTask
from geoseg.train.runner import TrainResult, resolve_hardware, train

__all__ = [
    "BundleConfig",
    "EvalResult",
    "ModelBundle",
    "Normalization",
    "Scores",
    "SegmentationLoss",
    "SegmentationTask",
    "TrainConfig",
    "TrainResult",
    "class_weights_from_counts",
    "confusion_scores",
    "evaluate",
    "load_bundle",
    "load_train_config",
    "normalize",
    "resolve_hardware",
    "save_bundle",
    "train",
]
