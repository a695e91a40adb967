"""Which windows become cubes: a block-aligned grid with stride ``cube_size - overlap``.

Along each axis the scene is cut into *split blocks* of ``k`` cubes: inside a block cubes
start every ``stride`` pixels (neighbours overlap by ``overlap``), and each block spans
``(k - 1) * stride + cube_size`` pixels, so the next block starts exactly where the last
cube of the previous one ends. Cubes of different blocks therefore never share a pixel,
and the train/val/test split, which assigns whole blocks, cannot leak between overlapping
cubes. With ``overlap = 0`` this is the plain grid of ``cube_size`` steps.

Edges are never dropped: when the next cube would cross the scene's right or bottom edge,
it is shifted inside so that it ends on the edge (``shift`` records by how much) and joins
the block of the cubes it overlaps. An axis shorter than a cube gets one cube that covers
it and is padded (``padded``: the data window is smaller than the cube).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from rasterio.windows import Window

from geoseg.errors import ConfigError

__all__ = ["AxisSlot", "CubeWindow", "axis_slots", "cube_windows", "check_tiling"]


@dataclass(frozen=True)
class AxisSlot:
    """One cube position along an axis."""

    offset: int  # first pixel
    extent: int  # data pixels (< cube size only when the axis is shorter than a cube)
    block: int  # split block along this axis
    shift: int  # pixels moved inwards from the regular position (edge cubes)


@dataclass(frozen=True)
class CubeWindow:
    """A cube's window in a scene, its split block and how it was fitted at the edges."""

    scene: int  # position of the scene in the dataset
    row_off: int
    col_off: int
    height: int  # data rows (cube size unless padded)
    width: int
    block_row: int
    block_col: int
    shift_row: int
    shift_col: int
    padded: bool

    @property
    def window(self) -> Window:
        """The cube's rasterio window."""
        return Window(self.col_off, self.row_off, self.width, self.height)


def check_tiling(cube_size: int, overlap: int, split_block: int) -> int:
    """Validate the tiling parameters; returns the stride."""
    if cube_size < 8:
        raise ConfigError(f"cube size {cube_size} is too small", hint="use at least 8 pixels (typically 128–512)")
    if not 0 <= overlap < cube_size:
        raise ConfigError(f"--overlap: {overlap} must be >= 0 and smaller than --cube-size {cube_size}",
                          hint="e.g. --cube-size 256 --overlap 32")
    if split_block < 1:
        raise ConfigError(f"split block {split_block} must be at least 1 cube")
    return cube_size - overlap


def axis_slots(size: int, cube_size: int, stride: int, k: int) -> list[AxisSlot]:
    """Cube positions along an axis of ``size`` pixels (see the module docstring)."""
    if size <= cube_size:
        return [AxisSlot(0, size, 0, 0)]
    span = (k - 1) * stride + cube_size
    slots: list[AxisSlot] = []
    block = 0
    while block * span < size:
        start = block * span
        for m in range(k):
            pos = start + m * stride
            if pos + cube_size <= size:
                slots.append(AxisSlot(pos, cube_size, block, 0))
                if pos + cube_size == size:
                    return slots
                continue
            edge = size - cube_size  # shift inside; it overlaps cubes of the current block
            owner = block if edge >= start else slots[-1].block
            if edge > slots[-1].offset:
                slots.append(AxisSlot(edge, cube_size, owner, pos - edge))
            return slots
        block += 1
    return slots


def cube_windows(scene: int, height: int, width: int, cube_size: int, overlap: int, split_block: int
                 ) -> Iterator[CubeWindow]:
    """Row-major cube windows of a ``height`` × ``width`` scene."""
    stride = check_tiling(cube_size, overlap, split_block)
    rows = axis_slots(height, cube_size, stride, split_block)
    cols = axis_slots(width, cube_size, stride, split_block)
    for r in rows:
        for c in cols:
            yield CubeWindow(scene, r.offset, c.offset, r.extent, c.extent, r.block, c.block, r.shift, c.shift,
                             r.extent < cube_size or c.extent < cube_size)
