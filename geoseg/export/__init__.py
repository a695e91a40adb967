"""Model export: ONNX for the Deepness QGIS plugin (and any onnxruntime user).

>>> from geoseg.export import export_onnx, ExportOptions
>>> result = export_onnx("runs/demo/train/model/best", "model.onnx", ExportOptions(opset=17))
>>> print("\\n".join(result.lines()))

Names are imported on first use, so ``geoseg.export.options`` loads without torch.
"""

from typing import TYPE_CHECKING

from geoseg.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from geoseg.export.deepness import (
        DEEPNESS_SCALE,
        METADATA_KEYS,
        deepness_preprocess,
        read_metadata,
        run_like_deepness,
    )
    from geoseg.export.onnx import (
        OnnxExport,
        deepness_metadata,
        export_onnx,
        reference_probabilities,
    )
    from geoseg.export.options import MAX_OPSET, ExportOptions

_EXPORTS = {
    "DEEPNESS_SCALE": "geoseg.export.deepness",
    "METADATA_KEYS": "geoseg.export.deepness",
    "deepness_preprocess": "geoseg.export.deepness",
    "read_metadata": "geoseg.export.deepness",
    "run_like_deepness": "geoseg.export.deepness",
    "OnnxExport": "geoseg.export.onnx",
    "deepness_metadata": "geoseg.export.onnx",
    "export_onnx": "geoseg.export.onnx",
    "reference_probabilities": "geoseg.export.onnx",
    "MAX_OPSET": "geoseg.export.options",
    "ExportOptions": "geoseg.export.options",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "DEEPNESS_SCALE",
    "MAX_OPSET",
    "METADATA_KEYS",
    "ExportOptions",
    "OnnxExport",
    "deepness_metadata",
    "deepness_preprocess",
    "export_onnx",
    "read_metadata",
    "reference_probabilities",
    "run_like_deepness",
]
