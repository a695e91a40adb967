"""What ``geoseg inspect`` reports about a scene, computed block by block."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from geoseg.io.grid import iter_blocks
from geoseg.io.reader import read_scl, read_window
from geoseg.io.scene import Scene
from geoseg.io.sensors import REFLECTANCE_SCALE, SCL_CLASSES

__all__ = ["SceneSummary", "summarise_scene"]


@dataclass
class SceneSummary:
    """What ``geoseg inspect`` reports about a scene (see :func:`summarise_scene`)."""

    scene: Scene
    valid_fraction: float
    scl_shares: dict[int, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        s, g = self.scene, self.scene.grid
        left, bottom, right, top = g.bounds
        out = [
            f"scene       {s.scene_id}  ({s.path})",
            f"layout      {s.layout}   level {s.level}   acquired {s.datetime or 'unknown'}",
            f"CRS         {g.crs.to_string()}",
            f"grid        {g.width} x {g.height} px at {g.resolution[0]:g} m",
            f"bounds      left {left:.1f}  bottom {bottom:.1f}  right {right:.1f}  top {top:.1f}",
            f"offset      {s.offset.offset:+g} DN  [{s.offset.source}] {s.offset.detail}",
            *([f"scale       {s.scale:g} DN per unit reflectance (stated; Sentinel-2 DN: 10000)"]
              if s.scale != REFLECTANCE_SCALE else []),
            "bands       " + "  ".join(f"{b}@{f.resolution:g}m" for b, f in s.bands.items()),
            f"SCL         {f'{s.scl.resolution:g} m' if s.scl else 'none'}"
            + (f"   invalid classes {list(s.invalid_scl)}" if s.scl else ""),
            f"mask        {s.mask.path if s.mask else 'none'}",
            f"valid       {100 * self.valid_fraction:.2f} % of pixels",
        ]
        if self.scl_shares:
            out.append("SCL classes")
            for code, share in sorted(self.scl_shares.items()):
                flag = "invalid" if code in s.invalid_scl else ""
                out.append(f"  {code:>3} {SCL_CLASSES.get(code, '?'):<26} {100 * share:6.2f} %  {flag}")
        return out


def summarise_scene(scene: Scene, block: int = 2048) -> SceneSummary:
    """Valid fraction and SCL class shares over the whole scene (one pass, block by block)."""
    total = valid = 0
    counts = np.zeros(256, dtype=np.int64)
    for window in iter_blocks(*scene.grid.shape, block):
        _, ok = read_window(scene, window, list(scene.bands))
        valid += int(ok.sum())
        total += ok.size
        scl = read_scl(scene, window)
        if scl is not None:
            counts += np.bincount(scl.ravel().astype(np.int64), minlength=256)[:256]
    shares = {int(c): float(n / total) for c, n in enumerate(counts) if n}
    return SceneSummary(scene, valid / max(total, 1), shares)
