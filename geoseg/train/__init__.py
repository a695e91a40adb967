"""Training and evaluation (the bundles they write and read: :mod:`geoseg.bundle`).

>>> from geoseg.train import TrainConfig, train, evaluate
>>> result = train(TrainConfig(cubes="cubes", out="model", model="unet3plus", encoder="resnet18"))
>>> evaluate(result.best, "cubes", "eval", split="test", save_examples=4)
"""

from geoseg.train.config import TrainConfig, load_train_config
from geoseg.train.evaluate import EvalResult, evaluate
from geoseg.train.losses import SegmentationLoss, class_weights_from_counts
from geoseg.train.metrics import Scores, confusion_scores
from geoseg.train.module import SegmentationTask
from geoseg.train.runner import TrainResult, resolve_hardware, train

__all__ = [
    "EvalResult",
    "Scores",
    "SegmentationLoss",
    "SegmentationTask",
    "TrainConfig",
    "TrainResult",
    "class_weights_from_counts",
    "confusion_scores",
    "evaluate",
    "load_train_config",
    "resolve_hardware",
    "train",
]
