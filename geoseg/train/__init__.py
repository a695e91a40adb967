"""Training and evaluation (the bundles they write and read: :mod:`geoseg.bundle`).

>>> from geoseg.train import TrainConfig, train, evaluate
>>> result = train(TrainConfig(cubes="cubes", out="model", model="unet3plus", encoder="resnet18"))
>>> evaluate(result.best, "cubes", "eval", split="test", save_examples=4)

Names are imported on first use, so ``geoseg.train.config`` (the options) loads without torch.
"""

from typing import TYPE_CHECKING

from geoseg.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from geoseg.train.config import TrainConfig, TrainOptions, load_train_config
    from geoseg.train.evaluate_options import EvaluateOptions
    from geoseg.train.evaluation import EvalResult, evaluate
    from geoseg.train.losses import SegmentationLoss, class_weights_from_counts
    from geoseg.train.metrics import Scores, confusion_scores
    from geoseg.train.module import SegmentationTask
    from geoseg.train.runner import TrainResult, resolve_hardware, train

_EXPORTS = {
    "TrainConfig": "geoseg.train.config",
    "TrainOptions": "geoseg.train.config",
    "load_train_config": "geoseg.train.config",
    "EvalResult": "geoseg.train.evaluation",
    "evaluate": "geoseg.train.evaluation",
    "EvaluateOptions": "geoseg.train.evaluate_options",
    "SegmentationLoss": "geoseg.train.losses",
    "class_weights_from_counts": "geoseg.train.losses",
    "Scores": "geoseg.train.metrics",
    "confusion_scores": "geoseg.train.metrics",
    "SegmentationTask": "geoseg.train.module",
    "TrainResult": "geoseg.train.runner",
    "resolve_hardware": "geoseg.train.runner",
    "train": "geoseg.train.runner",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "EvalResult",
    "EvaluateOptions",
    "Scores",
    "SegmentationLoss",
    "SegmentationTask",
    "TrainConfig",
    "TrainOptions",
    "TrainResult",
    "class_weights_from_counts",
    "confusion_scores",
    "evaluate",
    "load_train_config",
    "resolve_hardware",
    "train",
]
