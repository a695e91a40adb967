"""The streaming predictor: a scene and a model bundle in, a georeferenced land-cover COG out.

>>> from geoseg.predict import predict_scene
>>> summary = predict_scene("S2_SCENE.SAFE", "runs/demo/model/best", "landcover.tif")
>>> print("\\n".join(summary.lines()))
"""

from geoseg.bundle import (
    Device,
    ModelRunner,
    dihedral_transforms,
    load_model_bundle,
    resolve_device,
)
from geoseg.predict.api import check_output_paths, predict_scene, predict_scenes
from geoseg.predict.predictor import (
    DEFAULT_BATCH_SIZE,
    StreamStats,
    describe_model,
    plan_windows,
    prepare_run,
    stream_predictions,
)
from geoseg.predict.prefetch import prefetch
from geoseg.predict.summary import ClassArea, PredictionSummary
from geoseg.predict.windows import (
    DEFAULT_FLOOR,
    WindowLayout,
    axis_starts,
    taper_1d,
    window_layout,
    window_weights,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_FLOOR",
    "ClassArea",
    "Device",
    "ModelRunner",
    "PredictionSummary",
    "StreamStats",
    "WindowLayout",
    "axis_starts",
    "check_output_paths",
    "describe_model",
    "dihedral_transforms",
    "load_model_bundle",
    "plan_windows",
    "predict_scene",
    "prepare_run",
    "predict_scenes",
    "prefetch",
    "resolve_device",
    "stream_predictions",
    "taper_1d",
    "window_layout",
    "window_weights",
]
