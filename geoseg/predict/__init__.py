"""The streaming predictor: a scene and a model bundle in, a georeferenced land-cover COG out.

>>> from geoseg.predict import predict_scene, PredictOptions
>>> summary = predict_scene("S2_SCENE.SAFE", "runs/demo/train/model/best", "landcover.tif", PredictOptions(tta=True))
>>> print("\\n".join(summary.lines()))

Window layout and blending weights are in :mod:`geoseg.predict.windows`. Names are imported
on first use, so ``geoseg.predict.options`` loads without torch.
"""

from typing import TYPE_CHECKING

from geoseg.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from geoseg.bundle import load_model_bundle
    from geoseg.predict.api import predict_scene, predict_scenes
    from geoseg.predict.options import PredictOptions
    from geoseg.predict.predictor import StreamStats, plan_windows, stream_predictions
    from geoseg.predict.series import SeriesInput, series_from_catalog, series_from_scenes
    from geoseg.predict.summary import ClassArea, PredictionSummary
    from geoseg.predict.windows import WindowLayout, window_layout

_EXPORTS = {
    "load_model_bundle": "geoseg.bundle",
    "predict_scene": "geoseg.predict.api",
    "predict_scenes": "geoseg.predict.api",
    "PredictOptions": "geoseg.predict.options",
    "StreamStats": "geoseg.predict.predictor",
    "plan_windows": "geoseg.predict.predictor",
    "stream_predictions": "geoseg.predict.predictor",
    "SeriesInput": "geoseg.predict.series",
    "series_from_catalog": "geoseg.predict.series",
    "series_from_scenes": "geoseg.predict.series",
    "ClassArea": "geoseg.predict.summary",
    "PredictionSummary": "geoseg.predict.summary",
    "WindowLayout": "geoseg.predict.windows",
    "window_layout": "geoseg.predict.windows",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "ClassArea",
    "PredictOptions",
    "PredictionSummary",
    "SeriesInput",
    "StreamStats",
    "WindowLayout",
    "load_model_bundle",
    "plan_windows",
    "predict_scene",
    "predict_scenes",
    "series_from_catalog",
    "series_from_scenes",
    "stream_predictions",
    "window_layout",
]
