"""Seed 004 (PSPNet, in Spanish): its arcgis.learn snippets, as written, and PointRend "como con U-Net".

Each snippet runs verbatim after one substitution: ``from arcgis.learn import PSPNetClassifier``
becomes ``from geoseg.models import PSPNet as PSPNetClassifier``. ``data`` is what arcgis.learn's
``prepare_data`` gives, here a geoseg data source (an ``(N, C+1, H, W)`` array read as a
CubeStore): the model takes its input channels and classes from it. The default encoder
(ResNet-50, random weights) is kept; inputs are tiny. docs/seeds.md maps every name.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import REPO

SEED = REPO.parent / "shared" / "seeds" / "004_9690762b4411f1bd.txt"

# the seed's three code blocks, verbatim
SNIPPETS = {
    "default": "from arcgis.learn import PSPNetClassifier\npsp = PSPNetClassifier(data=data)\n",
    "use_unet": "psp = PSPNetClassifier(data=data, use_unet=False)\n",
    "pointrend": "psp = PSPNetClassifier(data=data, pointrend=True)\n",
}
IMPORT = ("from arcgis.learn import PSPNetClassifier", "from geoseg.models import PSPNet as PSPNetClassifier")



@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small training source with 24 channels and 4 classes (arcgis.learn's ``data``)."""
    from geoseg.data.arrays import ArrayStore

    rng = np.random.default_rng(0)
    cubes = rng.uniform(0.01, 0.4, (6, 25, 32, 32)).astype(np.float32)
    cubes[:, -1] = rng.integers(0, 4, (6, 32, 32))
    path = tmp_path_factory.mktemp("seed004") / "cubes.npy"
    np.save(path, cubes)
    return ArrayStore.open(path)


def _run(name: str, data):
    scope = {"data": data}
    code = "from arcgis.learn import PSPNetClassifier\n" + SNIPPETS[name] if name != "default" else SNIPPETS[name]
    exec(compile(code.replace(*IMPORT), f"seed_004_{name}", "exec"), scope)  # the seed's own text
    return scope["psp"]


def test_the_snippets_are_the_seeds() -> None:
    if not SEED.is_file():
        pytest.skip(f"{SEED} is not available")
    text = SEED.read_text()
    assert all(snippet in text for snippet in SNIPPETS.values())


def test_pspnet_classifier_default_has_the_fpn_unet_decoder(data) -> None:
    psp = _run("default", data)
    assert type(psp).__name__ == "PSPNet" and psp.spec["encoder"] == "resnet50"
    assert psp.in_channels == 24 and psp.num_classes == 4 and psp.channel_names == data.channel_names
    assert type(psp.decoder).__name__ == "SkipDecoder"  # "Por defecto, se crea un decoder FPN"
    assert len(psp.decoder.blocks) == len(psp.encoder.channels) - 1  # through every encoder skip
    assert len(psp.psp.branches) == 4
    with torch.no_grad():
        assert psp.eval()(torch.randn(1, 24, 40, 40)).shape == (1, 4, 40, 40)


def test_use_unet_false_is_the_8x_upsampling_head_on_a_dilated_backbone(data) -> None:
    psp = _run("use_unet", data)
    assert psp.decoder is None and psp.encoder.reductions == [2, 4, 8, 8, 8]
    # "En PSPNet, los dos últimos bloques tienen unos valores de dilatación de 2 y de 4"
    assert psp.encoder.model.layer3[1].conv2.dilation == (2, 2)
    assert psp.encoder.model.layer4[1].conv2.dilation == (4, 4)
    seen = {}

    def record(module, args, output) -> None:
        seen["shape"] = output.shape

    psp.segmentation_head.register_forward_hook(record)
    with torch.no_grad():
        assert psp.eval()(torch.randn(1, 24, 64, 64)).shape == (1, 4, 64, 64)
    assert seen["shape"][-1] == 8  # the classifier predicts at stride 8, upsampled x8


def test_pointrend_true_trains_on_points_and_refines_at_inference(data) -> None:
    from geoseg.train.losses import SegmentationLoss

    psp = _run("pointrend", data)
    assert psp.point_head is not None and psp.spec["options"]["pointrend"] is True
    out = psp.train().forward_train(torch.randn(2, 24, 32, 32))
    total, parts = SegmentationLoss(4)(out, torch.randint(0, 4, (2, 32, 32)))
    assert "points" in parts and parts["points"] > 0
    total.backward()
    assert psp.point_head.predictor.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert psp.eval()(torch.randn(1, 24, 32, 32)).shape == (1, 4, 32, 32)


def test_pyramid_sizes_are_adjustable(data) -> None:
    from geoseg.models import PSPNet as PSPNetClassifier

    psp = PSPNetClassifier(data=data, pyramid_sizes=[1, 3, 5, 6], encoder="test_resnet")
    assert psp.psp.sizes == (1, 3, 5, 6)


@pytest.mark.parametrize(("name", "encoder"), [("UNet", "test_resnet"), ("UNet3Plus", "test_convnext"),
                                               ("RSPRUNetPlusPlus", "test_resnet")])
def test_pointrend_as_with_unet(data, name: str, encoder: str) -> None:
    """"se puede añadir al modelo un módulo PointRend (como con U-Net)": the U-Net family too."""
    import geoseg.models
    from geoseg.train.losses import SegmentationLoss

    model = getattr(geoseg.models, name)(data=data, pointrend=True, encoder=encoder, point_fc_dim=16)
    out = model.train().forward_train(torch.randn(2, 24, 32, 32))
    _, parts = SegmentationLoss(4)(out, torch.randint(0, 4, (2, 32, 32)))
    assert "points" in parts and torch.isfinite(parts["points"])
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 24, 32, 32)).shape == (1, 4, 32, 32)
