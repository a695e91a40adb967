"""Model export: ONNX for the Deepness QGIS plugin (and any onnxruntime user).

>>> from geoseg.export import export_onnx
>>> result = export_onnx("runs/demo/train/model/best", "model.onnx")
>>> print("\\n".join(result.lines()))
"""

from geoseg.export.deepness import (
    DEEPNESS_SCALE,
    METADATA_KEYS,
    deepness_preprocess,
    read_metadata,
    run_like_deepness,
)
from geoseg.export.onnx import (
    MAX_OPSET,
    OnnxExport,
    deepness_metadata,
    export_onnx,
    reference_probabilities,
)

__all__ = [
    "DEEPNESS_SCALE",
    "MAX_OPSET",
    "METADATA_KEYS",
    "OnnxExport",
    "deepness_metadata",
    "deepness_preprocess",
    "export_onnx",
    "read_metadata",
    "reference_probabilities",
    "run_like_deepness",
]
