"""Model zoo: SMP-style encoder → decoder → head models behind one small registry.

>>> from geoseg.models import create_model, list_models
>>> model = create_model("unet3plus", in_channels=24, num_classes=5, encoder="resnet34")
>>> logits = model(x)                 # (N, 5, H, W) at input resolution, any H, W
>>> out = model.forward_train(x)      # ModelOutput: mask, deep, aux_mask, label, points

Architectures: ``rsprunetpp``, ``unet3plus``, ``deeplabv3plus``, ``pspnet``, ``unet``, and the
time-series ``deeplabv3plus3d``. Every 2D architecture also takes a series ``(N, T, C, H, W)``
with ``temporal="channels"`` or ``temporal="attention"`` (:mod:`geoseg.models.temporal`):

>>> model = create_model("unet", in_channels=24, num_classes=5, temporal="attention")
>>> logits = model(series)            # (N, T, 24, H, W) -> (N, 5, H, W)
"""

from geoseg.models.base import SegmentationModel
from geoseg.models.deeplabv3plus import DeepLabV3Plus
from geoseg.models.deeplabv3plus3d import DeepLabV3Plus3D
from geoseg.models.encoders import (
    FeatureEncoder,
    check_encoder,
    create_encoder,
    register_encoder,
    registered_encoders,
    unregister_encoder,
)
from geoseg.models.first_conv import (
    RGB_BANDS,
    BandMapping,
    adapt_first_conv_weight,
    date_channel_names,
    normalize_band_name,
)
from geoseg.models.masked_batchnorm import MaskedBatchNorm2d
from geoseg.models.outputs import ModelOutput
from geoseg.models.pointrend import PointHead
from geoseg.models.pspnet import PSPNet
from geoseg.models.registry import (
    MODELS,
    create_model,
    describe_models,
    get_model_class,
    list_models,
    load_model,
)
from geoseg.models.rsprunetpp import RSPRUNetPlusPlus
from geoseg.models.temporal import TemporalAttention, series_validity
from geoseg.models.unet import UNet
from geoseg.models.unet3plus import UNet3Plus
from geoseg.models.weights import (
    load_torchgeo_weights,
    load_weights,
    read_state_dict,
    save_weights,
)

__all__ = [
    "MODELS",
    "RGB_BANDS",
    "BandMapping",
    "DeepLabV3Plus",
    "DeepLabV3Plus3D",
    "FeatureEncoder",
    "MaskedBatchNorm2d",
    "ModelOutput",
    "PSPNet",
    "PointHead",
    "RSPRUNetPlusPlus",
    "SegmentationModel",
    "TemporalAttention",
    "UNet",
    "UNet3Plus",
    "adapt_first_conv_weight",
    "check_encoder",
    "create_encoder",
    "create_model",
    "date_channel_names",
    "describe_models",
    "get_model_class",
    "list_models",
    "load_model",
    "load_torchgeo_weights",
    "load_weights",
    "normalize_band_name",
    "read_state_dict",
    "register_encoder",
    "registered_encoders",
    "save_weights",
    "series_validity",
    "unregister_encoder",
]
