"""A recipe's channels from DN in torch, on any device: the batch transform of compact CubeStores.

:func:`features_from_dn_torch` is the torch twin of :func:`geoseg.features.stack.features_from_dn`:
DN become reflectance ``(DN + offset) / scale`` in float64 through
:func:`geoseg.io.radiometry.dn_to_reflectance_torch` (the twin of ``dn_to_reflectance``), every index is evaluated in float64 from
the recipe's formula (the same AST the numba kernel is generated from, with the kernel's
rewrites: ``a / b`` is 0 where ``b == 0``, ``x ** 2`` is ``x * x``) and each channel is rounded to
float32 once. Every step is one IEEE-754 operation (add, subtract, multiply, divide, square root,
rounding to float32), correctly rounded on every device torch supports, and the operations come in
the kernel's order, so the result equals the numba kernel and the numpy path bit for bit (tested
on CPU in ``tests/data/test_compact.py``).

Invalid pixels are NaN in every DN band of a compact cube (:mod:`geoseg.tiling.compact`); they
become :data:`~geoseg.io.radiometry.INVALID_FILL` (0) in every channel, as in the 24-channel store.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable

import torch

from geoseg.features.recipes import Recipe
from geoseg.io.radiometry import INVALID_FILL, dn_to_reflectance_torch

__all__ = ["features_from_dn_torch", "dn_valid_torch"]

Tensor = torch.Tensor


def dn_valid_torch(dn: Tensor) -> Tensor:
    """The valid mask ``(N, H, W)`` of compact DN ``(N, B, H, W)``: invalid pixels are NaN in every band."""
    first = dn[:, 0]
    return first == first


def _div(a: Tensor, b: Tensor) -> Tensor:
    return torch.where(b != 0.0, a / b, 0.0)


def _compile(node: ast.AST) -> Callable[[dict[str, Tensor]], Tensor | float]:
    """A closure evaluating the formula AST ``node`` over float64 reflectance tensors."""
    if isinstance(node, ast.Name):
        name = node.id
        return lambda r: r[name]
    if isinstance(node, ast.Constant):
        value = float(node.value)  # type: ignore[arg-type]  # numbers only (Formula._check); float64 as in the kernel
        return lambda r: value
    if isinstance(node, ast.UnaryOp):
        operand = _compile(node.operand)
        if isinstance(node.op, ast.USub):
            return lambda r: -operand(r)
        return operand
    if isinstance(node, ast.Call):  # sqrt(x), the only call a Formula allows
        arg = _compile(node.args[0])
        return lambda r: torch.sqrt(_tensor(arg(r)))
    assert isinstance(node, ast.BinOp)  # guaranteed by Formula._check
    left, right = _compile(node.left), _compile(node.right)
    if isinstance(node.op, ast.Div):
        return lambda r: _div(_tensor(left(r)), _tensor(right(r)))
    if isinstance(node.op, ast.Pow) and isinstance(node.right, ast.Constant) and node.right.value == 2:
        return lambda r: _square(left(r))  # x ** 2 → x * x, as the kernel and numpy do
    if isinstance(node.op, ast.Pow):
        return lambda r: torch.pow(_tensor(left(r)), right(r))
    op = _BINOPS[type(node.op)]
    return lambda r: _apply(op, left(r), right(r))


_BINOPS: dict[type, Callable[..., Tensor]] = {ast.Add: torch.add, ast.Sub: torch.sub, ast.Mult: torch.mul}


def _tensor(value: Tensor | float) -> Tensor:
    return value if isinstance(value, Tensor) else torch.tensor(value, dtype=torch.float64)


def _square(value: Tensor | float) -> Tensor | float:
    return value * value


def _apply(op: Callable, a: Tensor | float, b: Tensor | float) -> Tensor | float:
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        return float(op(torch.tensor(a, dtype=torch.float64), b))
    return op(a, b) if isinstance(a, Tensor) else op(_tensor(a).to(b.device), b)  # type: ignore[union-attr]


@functools.cache
def _index_functions(recipe: Recipe) -> tuple[Callable[[dict[str, Tensor]], Tensor | float], ...]:
    return tuple(_compile(ast.parse(text, mode="eval").body) for _, text in recipe.indices)


def features_from_dn_torch(dn: Tensor, radiometry: Tensor, recipe: Recipe) -> Tensor:
    """The recipe's channels ``(N, C, H, W)`` float32 of compact DN, on ``dn``'s device.

    Args:
        dn: ``(N, len(recipe.required_bands), H, W)`` float32 DN in ``required_bands`` order,
            NaN in every band at invalid pixels (a batch of compact cubes).
        radiometry: ``(N, 2)`` float64 ``(offset, scale)`` of each cube's scene:
            reflectance = (DN + offset) / scale.
        recipe: the store's recipe.

    Returns:
        float32 ``(N, C, H, W)``, equal bit for bit to the 24-channel store's cubes (invalid
        pixels 0 in every channel).
    """
    if dn.ndim != 4 or dn.shape[1] != len(recipe.required_bands):
        raise ValueError(f"DN of recipe {recipe.name} must be (N, {len(recipe.required_bands)}, H, W), "
                         f"got {tuple(dn.shape)}")
    valid = dn_valid_torch(dn)
    offset = radiometry[:, 0].to(device=dn.device, dtype=torch.float64)[:, None, None]
    scale = radiometry[:, 1].to(device=dn.device, dtype=torch.float64)[:, None, None]
    reflectance = {b: dn_to_reflectance_torch(dn[:, i], offset, scale) for i, b in enumerate(recipe.required_bands)}
    out = torch.empty((dn.shape[0], recipe.num_channels, *dn.shape[2:]), dtype=torch.float32, device=dn.device)
    fill = torch.tensor(INVALID_FILL, dtype=torch.float32, device=dn.device)
    for c, band in enumerate(recipe.bands):
        out[:, c] = torch.where(valid, reflectance[band].float(), fill)
    for c, fn in enumerate(_index_functions(recipe), start=len(recipe.bands)):
        value = fn(reflectance)
        if not isinstance(value, Tensor):  # a constant index
            value = torch.full(valid.shape, value, dtype=torch.float64, device=dn.device)
        out[:, c] = torch.where(valid, value.float(), fill)
    return out
