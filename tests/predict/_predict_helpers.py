"""Helpers of the predictor tests: tiny models, bundles and synthetic scenes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from geoseg.bundle import BundleConfig, ModelBundle, Normalization, save_bundle
from geoseg.config.catalog import ClassDef
from geoseg.features import get_recipe
from geoseg.io.grid import Grid
from geoseg.stitch import StitchedBlock

L2A_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
DEMO_CLASSES = [
    ClassDef(code=1, name="water", color="#1f78b4"),
    ClassDef(code=2, name="forest", color="#1b7837"),
    ClassDef(code=3, name="cropland", color="#f1c232"),
    ClassDef(code=4, name="grassland", color="#a6d96a"),
    ClassDef(code=5, name="built-up", color="#d7301f"),
    ClassDef(code=6, name="bare soil", color="#c2a27d"),
]
# Non-contiguous codes, to catch index/code mix-ups
SPARSE_CLASSES = [
    ClassDef(code=3, name="water", color="#0000ff"),
    ClassDef(code=7, name="trees", color="#00aa00"),
    ClassDef(code=12, name="crops", color="#eecc00"),
    ClassDef(code=200, name="built area", color="#cc0000"),
]


class PointwiseNet(torch.nn.Module):
    """Two 1×1 convolutions: no spatial context at all (each pixel is classified alone)."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 16):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, hidden, 1), torch.nn.ReLU(), torch.nn.Conv2d(hidden, num_classes, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def bundle_config(classes: Sequence[ClassDef], recipe: str = "s2_24", window: int = 64,
                  model_spec: dict | None = None, mean: float = 0.15, std: float = 0.1) -> BundleConfig:
    r = get_recipe(recipe)
    n = r.num_channels
    return BundleConfig(
        model=model_spec or {"name": "pointwise", "in_channels": n, "num_classes": len(classes)},
        recipe=r, channel_names=list(r.channel_names),
        classes=list(classes), normalization=Normalization(mean=[mean] * n, std=[std] * n), window=window,
        predict_window=window, mask_channels=r.num_mask_channels,  # tests lay windows out at the bundle's size
    )


def pointwise_bundle(classes: Sequence[ClassDef] = DEMO_CLASSES, recipe: str = "s2_24", window: int = 64,
                     seed: int = 0) -> ModelBundle:
    """An in-memory bundle around :class:`PointwiseNet` (weights scaled up: decisive classes)."""
    torch.manual_seed(seed)
    r = get_recipe(recipe)
    model = PointwiseNet(r.num_channels, len(classes))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return ModelBundle(model.eval(), bundle_config(classes, recipe, window))


def unet_bundle(directory: Path, classes: Sequence[ClassDef] = DEMO_CLASSES, recipe: str = "s2_24",
                window: int = 64, seed: int = 0) -> Path:
    """A small real convolutional model (UNet, timm ``test_resnet``) saved as a bundle."""
    from geoseg.models import create_model

    torch.manual_seed(seed)
    r = get_recipe(recipe)
    model = create_model("unet", in_channels=r.num_channels, num_classes=len(classes), encoder="test_resnet",
                         encoder_depth=3, decoder_channels=[16, 16, 16], channel_names=list(r.channel_names))
    save_bundle(model.eval(), bundle_config(classes, recipe, window, model_spec=model.spec), directory)
    return directory


def write_multiband_scene(path: Path, height: int, width: int, *, seed: int = 0, bands: Sequence[str] = L2A_BANDS,
                          epsg: int = 32633, origin: tuple[float, float] = (500000.0, 5800000.0),
                          nodata_box: bool = True) -> Path:
    """A multi-band int16 GeoTIFF with band descriptions, smooth random fields and a nodata box.

    DNs are reflectance × 10000 with no offset metadata (tag ``BOA_ADD_OFFSET=0``).
    """
    rng = np.random.default_rng(seed)
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": len(bands), "dtype": "int16",
        "crs": CRS.from_epsg(epsg), "transform": Affine(10, 0, origin[0], 0, -10, origin[1]), "nodata": 0,
        "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
    }
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    with rasterio.open(path, "w", **profile) as ds:
        for i, band in enumerate(bands, start=1):
            fx, fy, ph = rng.uniform(0.01, 0.08, 3)
            field = 1500 + 1200 * np.sin(fx * xx + ph) * np.cos(fy * yy) + rng.normal(0, 150, (height, width))
            dn = np.clip(field, 1, 9000).astype(np.int16)
            if nodata_box:
                dn[height // 5 : height // 5 + 7, width // 3 : width // 3 + 11] = 0
            ds.write(dn, i)
            ds.set_band_description(i, band)
        ds.update_tags(BOA_ADD_OFFSET="0")
    return path


class CollectSink:
    """A block sink keeping every stitched block (for tests on small scenes)."""

    def __init__(self) -> None:
        self.blocks: list[StitchedBlock] = []

    def __call__(self, block: StitchedBlock) -> None:
        self.blocks.append(block)

    def probs(self) -> np.ndarray:
        return np.concatenate([b.probs for b in self.blocks], axis=1)

    def valid(self) -> np.ndarray:
        return np.concatenate([b.valid for b in self.blocks], axis=0)


def full_forward(scene, bundle: ModelBundle) -> tuple[np.ndarray, np.ndarray]:
    """Reference: one forward pass over the whole scene (probabilities (K, H, W), valid mask)."""
    from geoseg.bundle import normalize
    from geoseg.features import read_features

    recipe = bundle.config.recipe
    features, valid = read_features(scene, Window(0, 0, scene.grid.width, scene.grid.height), recipe)
    x = normalize(torch.from_numpy(features)[None], bundle.config.normalization, bundle.config.mask_channels)
    with torch.inference_mode():
        logits = bundle.model(x)
        if isinstance(logits, tuple):
            logits = logits[0]
        probs = torch.softmax(logits.float(), dim=1)[0].numpy()
    return probs, valid


def input_grid(path: Path) -> Grid:
    with rasterio.open(path) as ds:
        return Grid.from_dataset(ds)
