"""Seed 000 (RSPRUNet++): its example usage, as written, and its data format, trained on directly.

The seed's ``Example Usage`` block runs verbatim with ``from geoseg.models import RSPRUNetPlusPlus``
in front; only the example input is tiny (64 px instead of 256 px, the model's default ResNeSt-101
encoder on CPU). Its data format — an ``np.ndarray`` ``(NB_CUBES, NB_CHANNELS + 1, H, W)`` whose
last channel holds the class, masked pixels 0 in the first 11 channels — is trained on with
``geoseg train cubes.npy``. docs/seeds.md maps every name.
"""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from tests.reliability.conftest import run_inproc

SEED = REPO.parent / "shared" / "seeds" / "000_f6f7cd39f64a0d6d.txt"

# the seed's "Example Usage" code block, verbatim
EXAMPLE = """\
if __name__ == "__main__":
    model = RSPRUNetPlusPlus(num_classes=3, input_channels=24)
    input_tensor = torch.randn(2, 24, 256, 256)  # Example input (batch of 2)
    outputs = model(input_tensor)
    print("Output shape:", outputs.shape)
"""



def test_the_example_is_the_seeds() -> None:
    if not SEED.is_file():
        pytest.skip(f"{SEED} is not available")
    assert textwrap.dedent(EXAMPLE) in SEED.read_text()


def test_the_seeds_example_usage_runs(capsys) -> None:
    code = "from geoseg.models import RSPRUNetPlusPlus\nimport torch\n" + EXAMPLE.replace("256, 256", "64, 64")
    scope: dict = {"__name__": "__main__"}
    torch.manual_seed(0)
    exec(compile(code, "seed_000_example", "exec"), scope)  # the seed's own text
    assert capsys.readouterr().out.strip() == "Output shape: torch.Size([2, 3, 64, 64])"
    model = scope["model"]
    # what the seed describes: ResNeSt-101 encoder, masked BatchNorm on the first 11 channels,
    # scSE in the decoder blocks, the decoder stages fused by a final 1x1 convolution
    assert model.spec["encoder"] == "resnest101e" and model.spec["in_channels"] == 24
    assert model.input_norm.mask_channels == 11
    assert type(model.decoder.blocks["x_0_1"].attention1).__name__ == "SCSEModule"
    assert model.fusion.kernel_size == (1, 1) and model.fusion.in_channels == 4 * 3


def test_the_seeds_data_format_is_trained_on_directly(tmp_path, monkeypatch) -> None:
    """``(NB_CUBES, NB_CHANNELS + 1, CUBE_HEIGHT, CUBE_WIDTH)``: the extra channel is the class."""
    rng = np.random.default_rng(0)
    cubes = rng.uniform(0.01, 0.4, (10, 24 + 1, 32, 32)).astype(np.float32)
    cubes[:, :11, :6, :6] = 0  # masked pixels: 0 across the first 11 channels
    ramp = np.broadcast_to(np.arange(32) // 11, (32, 32))  # 3 classes, learnable from the bands
    cubes[:, -1] = ramp
    cubes[:, 3] += ramp * 0.3
    monkeypatch.chdir(tmp_path)
    np.save("cubes.npy", cubes)
    result = run_inproc("train", "cubes.npy", "--out", "model", "--model", "rsprunetpp", "--encoder", "test_resnet",
                        "--model-option", "decoder_channels=[16,16,8,8]", "--epochs", "1", "--batch-size", "4",
                        "--num-workers", "0", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "best model:" in result.stdout and os.path.isdir("model/best")
    from geoseg.bundle import load_bundle

    bundle = load_bundle("model/best")
    assert [c.code for c in bundle.config.classes] == [1, 2, 3]  # class index i -> code i + 1
    assert bundle.config.model.name == "rsprunetpp" and bundle.config.model.options["mask_channels"] == 11
    with torch.no_grad():
        assert bundle.model(torch.zeros(2, 24, 32, 32)).shape == (2, 3, 32, 32)
