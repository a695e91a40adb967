"""The s2_24 recipe against an independent computation on real L2A samples."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geoseg.features import get_recipe, read_features
from geoseg.io import open_scene
from tests.conftest import shared

L2A_ORDER = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
SAMPLES = ["282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3"]
# From the samples' README: which L2A files carry the +1000 offset (inferred there from minima).
L2A_HAS_OFFSET = {"282D_485L_3_3": False, "38D_378R_2_3": False, "433D_629L_3_1": True,
                  "609U_541L_3_0": False, "637U_59R_1_3": False}
L1C_HAS_OFFSET = {"282D_485L_3_3": True, "38D_378R_2_3": False, "433D_629L_3_1": True,
                  "609U_541L_3_0": True, "637U_59R_1_3": False}


def _by_hand(dn: np.ndarray, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """The 24 channels of s2_24 (geoseg/features/recipes.yaml) written out independently, in float64."""
    r = {b: (dn[i].astype(np.float64) + offset) / 10000 for i, b in enumerate(L2A_ORDER)}
    valid = (dn != 0).all(axis=0)

    def div(a, b):
        return np.divide(a, b, out=np.zeros_like(a), where=b != 0)

    ch = [r[b] for b in ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]]
    ch += [
        div(r["B8A"] - r["B11"], r["B8A"] + r["B11"]),
        div(r["B08"] + r["B03"], r["B04"] + r["B11"]),
        div(r["B03"] - r["B04"], r["B03"] + r["B04"]),
        div(r["B12"], r["B8A"]),
        div(2 * r["B03"] - r["B02"] - r["B04"], 2 * r["B03"] + r["B02"] + r["B04"]),
        div(r["B07"] - r["B05"], r["B07"] + r["B05"]),
        div(r["B08"], r["B03"]),
        div(r["B8A"] - r["B04"], r["B8A"] + r["B04"]),
        div(r["B8A"] - r["B03"], r["B8A"] + r["B03"]),
        div(r["B8A"], r["B03"]) - 1,
        div(r["B8A"] * r["B05"], r["B03"] ** 2),
        div(r["B8A"] - r["B07"], r["B8A"] + r["B07"]),
        np.sqrt(r["B04"] ** 2 + r["B12"] ** 2),
    ]
    out = np.stack(ch)
    out[:, ~valid] = 0
    return out, valid


@pytest.mark.parametrize("sample", SAMPLES)
def test_s2_24_matches_independent_computation(sample: str) -> None:
    path = shared("terramind_examples", "S2L2A", f"{sample}.tif")
    scene = open_scene(path)
    with rasterio.open(path) as ds:
        dn = ds.read()
        crs, transform, shape = ds.crs, ds.transform, (ds.height, ds.width)
    features, valid = read_features(scene, Window(0, 0, shape[1], shape[0]), "s2_24")
    expected, expected_valid = _by_hand(dn, scene.offset.offset)

    assert features.dtype == np.float32 and features.shape == (24, *shape)
    np.testing.assert_array_equal(valid, expected_valid)
    # The stack is float32: compare with the float64 reference rounded once to float32 (an
    # index such as CVI reaches 1e4 over dark water, where one float32 ulp is ~1e-3).
    assert np.abs(features - expected.astype(np.float32)).max() <= 1e-5
    assert np.abs(features[:11] - expected[:11]).max() <= 1e-5
    # Same grid as the input, bit for bit.
    assert scene.grid.crs == crs
    assert scene.grid.affine == transform
    assert scene.grid.shape == shape


@pytest.mark.parametrize("sample", SAMPLES)
def test_offset_rule_matches_the_samples(sample: str) -> None:
    l2a = open_scene(shared("terramind_examples", "S2L2A", f"{sample}.tif"))
    l1c = open_scene(shared("terramind_examples", "S2L1C", f"{sample}.tif"))
    assert l2a.offset.source == l1c.offset.source == "inferred"
    assert (l2a.offset.offset == -1000) == L2A_HAS_OFFSET[sample]
    assert (l1c.offset.offset == -1000) == L1C_HAS_OFFSET[sample]
    assert l1c.level == "L1C" and "B10" in l1c.bands
    assert l2a.level == "L2A" and "B10" not in l2a.bands


def test_catalog_offset_overrides_inference() -> None:
    path = shared("terramind_examples", "S2L2A", "433D_629L_3_1.tif")
    scene = open_scene(path, offset=0)
    assert scene.offset.offset == 0 and scene.offset.source == "catalog"
    features, _ = read_features(scene, Window(0, 0, 8, 8))
    with rasterio.open(path) as ds:
        b02 = ds.read(2, window=Window(0, 0, 8, 8))
    np.testing.assert_allclose(features[1], b02 / 10000, atol=1e-6)


def test_recipe_channel_names() -> None:
    recipe = get_recipe("s2_24")
    assert recipe.channel_names[:11] == ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
    assert recipe.channel_names[11:] == ("NDWI", "DWSI", "NGRDI", "RDI", "GLI", "NDRE2", "PBI", "NDVI",
                                         "GNDVI", "CIG", "CVI", "NDRE3", "DRS")
