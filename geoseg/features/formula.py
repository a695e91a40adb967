"""A tiny, safe evaluator for index formulas declared in recipes.

Formulas are parsed once with :mod:`ast` and evaluated over numpy arrays. Only band names,
numbers, ``+ - * / **``, unary minus and ``sqrt`` are allowed. A division by zero gives 0
(the rule of every recipe, README "Reading Sentinel-2"): ``a / b`` is 0 wherever ``b == 0``,
and the rest of the formula goes on from there (so ``B8A / B03 - 1`` is ``-1`` where B03 is 0).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping

import numpy as np

from geoseg.errors import ConfigError

__all__ = ["Formula", "compile_formula"]

Arrays = Mapping[str, np.ndarray]
_BINOPS: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Pow: np.power,
}


class Formula:
    """A compiled index formula: ``formula(bands) -> float32 values``."""

    def __init__(self, text: str, name: str = "index"):
        self.text = text
        self.name = name
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as err:
            raise ConfigError(f"index {name!r}: cannot parse formula {text!r} ({err.msg})") from None
        self.bands: tuple[str, ...] = tuple(
            sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id != "sqrt"})
        )
        self._tree = tree.body
        self._check(self._tree)

    def _check(self, node: ast.AST) -> None:
        allowed = (ast.BinOp, ast.UnaryOp, ast.Name, ast.Constant, ast.Call, ast.USub, ast.UAdd)
        for sub in ast.walk(node):
            if isinstance(sub, ast.operator) and type(sub) not in (*_BINOPS, ast.Div):
                raise ConfigError(f"index {self.name!r}: operator {type(sub).__name__} not allowed")
            if isinstance(sub, ast.Call) and not (
                isinstance(sub.func, ast.Name) and sub.func.id == "sqrt" and len(sub.args) == 1
            ):
                raise ConfigError(f"index {self.name!r}: only sqrt(x) may be called in {self.text!r}")
            if isinstance(sub, ast.Constant) and not isinstance(sub.value, int | float):
                raise ConfigError(f"index {self.name!r}: constant {sub.value!r} is not a number")
            if not isinstance(sub, allowed + (ast.operator, ast.Load, ast.unaryop)):
                raise ConfigError(f"index {self.name!r}: {type(sub).__name__} not allowed in {self.text!r}")

    def __call__(self, bands: Arrays) -> np.ndarray:
        """Evaluate the formula on ``bands`` (name → array); division by zero gives inf/NaN."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            values = self._eval(self._tree, bands)
        return np.asarray(values)

    def _eval(self, node: ast.AST, bands: Arrays):
        if isinstance(node, ast.Name):
            return bands[node.id]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, bands)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Call):
            return np.sqrt(self._eval(node.args[0], bands))
        assert isinstance(node, ast.BinOp)  # guaranteed by _check
        left = self._eval(node.left, bands)
        right = self._eval(node.right, bands)
        if isinstance(node.op, ast.Div):
            left, right = np.broadcast_arrays(np.asarray(left), np.asarray(right))
            out = np.zeros(left.shape, dtype=np.result_type(left, right))
            return np.divide(left, right, out=out, where=right != 0)
        return _BINOPS[type(node.op)](left, right)


def compile_formula(text: str, name: str = "index") -> Formula:
    """Parse and validate ``text``; raises ConfigError for anything but simple arithmetic."""
    return Formula(text, name)
