"""The model bundle: what a trained model is, apart from the training that made it.

A layer below ``data``, ``train``, ``predict`` and ``export``; it imports no Lightning and no
torchmetrics. It owns:

* ``config``: :class:`BundleConfig` (``config.json``, every field typed) and
  :func:`read_bundle_config`;
* ``normalization``: :class:`Normalization` and :func:`normalize` (valid pixels only; the
  invalid-pixel rule itself is :func:`geoseg.validity.valid_mask`);
* ``files``: :class:`ModelBundle`, :func:`save_bundle`, :func:`load_bundle`;
* ``domain``: :class:`TrainingDomain` (what the model was trained on, ``config.json``'s
  ``domain``) and :func:`check_domain` (does a scene fit it?);
* ``runs``: a bundle or a training run's ``best``/``final`` bundle (:func:`load_model_bundle`,
  :func:`run_bundle_dir`, :func:`resolve_bundle_dir`);
* ``device``: the device-and-precision policy of inference (:func:`resolve_device`);
* ``runner``: :class:`ModelRunner`, the one forward pass of evaluate, predict and the ONNX
  reference.

>>> from geoseg.bundle import load_model_bundle, ModelRunner
>>> bundle = load_model_bundle("runs/demo/train/model")      # its best/ bundle
>>> probs = ModelRunner(bundle, device="cpu")(features)       # (N, K, H, W)
"""

from geoseg.bundle.config import CONFIG_NAME, WEIGHTS_NAME, BundleConfig, read_bundle_config
from geoseg.bundle.device import Device, DeviceName, resolve_device, resolve_precision
from geoseg.bundle.domain import TrainingDomain, check_domain
from geoseg.bundle.files import ModelBundle, load_bundle, save_bundle
from geoseg.bundle.normalization import Normalization, normalize
from geoseg.bundle.runner import ModelRunner, dihedral_transforms
from geoseg.bundle.runs import BundleChoice, load_model_bundle, resolve_bundle_dir, run_bundle_dir

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "BundleChoice",
    "BundleConfig",
    "Device",
    "DeviceName",
    "ModelBundle",
    "ModelRunner",
    "Normalization",
    "TrainingDomain",
    "check_domain",
    "dihedral_transforms",
    "load_bundle",
    "load_model_bundle",
    "normalize",
    "read_bundle_config",
    "resolve_bundle_dir",
    "resolve_device",
    "resolve_precision",
    "run_bundle_dir",
    "save_bundle",
]
