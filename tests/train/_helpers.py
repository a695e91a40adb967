"""Helpers of the trainer tests: a small tiled demo store and tiny training configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from geoseg.demo import DEMO_CLASSES

# small demo store: 64 px cubes without overlap, each its own split block
STORE_PARAMS = {"cube_size": 64, "overlap": 0, "min_valid": 0.2, "split_block": 1, "seed": 0}

# tiny model options per architecture, for fast CPU runs
TINY: dict[str, dict[str, Any]] = {
    "unet": {"model_options": {"decoder_channels": [32, 16, 16, 8, 8]}},
    "unet3plus": {"cat_channels": 8},
    "rsprunetpp": {"model_options": {"decoder_channels": [16, 16, 8, 8]}},
    "deeplabv3plus": {"model_options": {"aspp_channels": 16, "decoder_channels": 16, "low_level_channels": 8}},
    "pspnet": {"model_options": {"psp_channels": 16, "decoder_channels": [16, 16, 8, 8]}},
}


def make_demo_store(root: Path, size: int = 336, seed: int = 1, workers: int = 1, **params: Any) -> Path:
    """Generate a demo scene under ``root`` and tile it into ``root / 'store'``."""
    from geoseg.demo import generate_demo_scene
    from geoseg.tiling import tile_dataset

    demo = generate_demo_scene(root / "scene", size=size, seed=seed, progress=False)
    catalog = root / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({
        "schema_version": 1,
        "datasets": {"demo": {
            "recipe": "s2_24",
            "ignore_codes": [0],
            "classes": [{"code": c, "name": n, "color": col} for c, n, col in DEMO_CLASSES],
            "scenes": [{"id": "demo", "path": str(demo.scene), "labels": {"raster": str(demo.labels)}}],
        }},
    }))
    out = root / "store"
    tile_dataset(catalog, "demo", out, workers=workers, progress=False, **{**STORE_PARAMS, **params})
    return out


def tiny_config(cubes: Path, out: Path, model: str = "unet", **overrides: Any):
    """A TrainConfig for a fast CPU run of ``model`` with a tiny timm encoder."""
    from geoseg.train import TrainConfig

    base: dict[str, Any] = {
        "cubes": cubes, "out": out, "model": model, "encoder": "test_resnet", "epochs": 2, "batch_size": 8,
        "lr": 2e-3, "progress": False, "num_workers": 0, "patience": None, **TINY.get(model, {}),
    }
    base.update(overrides)
    return TrainConfig(**base)
