"""Plain-numpy export of a CubeStore (one ``(cubes, channels[+1], H, W)`` float32 array) and a printable summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geoseg.errors import EmptyAreaError, GeosegError
from geoseg.tiling.store import CubeStore, Split
from geoseg.utils.atomic import atomic_path
from geoseg.utils.outputs import check_not_input, claim_file

__all__ = ["export_npy", "store_info"]


def export_npy(store: str | Path | CubeStore, out: str | Path, *, with_labels: bool = False,
               split: Split | None = None) -> Path:
    """Write cubes as one ``.npy`` array ``(N, C[+1], H, W)`` float32, cube by cube (memory-mapped).

    With ``with_labels`` the last channel is the label as a float32 training index (255 =
    ignore). Cubes are in cube-id order (of ``split`` only, when given). Written atomically.
    A multi-date store's array is ``(N, T, C, H, W)`` (its labels, ``(N, H, W)``, have no date).
    """
    cubes = store if isinstance(store, CubeStore) else CubeStore.open(store)
    check_not_input({"--out": out}, [cubes.path])
    out = claim_file(out, suffixes=(".npy",))
    if with_labels and not cubes.has_labels:
        raise GeosegError("this CubeStore has no labels", path=cubes.path, hint="export without --with-labels")
    if with_labels and cubes.time_steps:
        raise GeosegError(f"a multi-date CubeStore's cubes are (T={cubes.time_steps}, C, H, W): the labels (H, W) "
                          "are not a channel of them", path=cubes.path,
                          hint="export without --with-labels (labels: CubeStore.read_labels)")
    ids = cubes.ids(split)
    if len(ids) == 0:
        raise EmptyAreaError(f"no cubes in split {split!r}", path=cubes.path, hint="choose another --split")
    channels = cubes.num_channels + (1 if with_labels else 0)
    size = cubes.cube_size
    shape = (len(ids), *cubes.cube_shape) if cubes.time_steps else (len(ids), channels, size, size)
    with atomic_path(out) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        for k, i in enumerate(ids):
            arr[k, ..., : cubes.num_channels, :, :] = cubes.read_cube(i)
            if with_labels:
                arr[k, -1] = cubes.read_label(i).astype(np.float32)
        arr.flush()
        del arr
    return out


def store_info(store: str | Path | CubeStore) -> list[str]:
    """Human-readable summary lines of a store."""
    cubes = store if isinstance(store, CubeStore) else CubeStore.open(store)
    m, index = cubes.manifest, cubes.index
    lines = [
        f"CubeStore {cubes.path}",
        f"  dataset {m['dataset']!r}, recipe {m['recipe']['name']} ({cubes.num_channels} channels), "
        f"geoseg {m['geoseg_version']}",
        _form_line(cubes),
        f"  {len(cubes)} cubes of {m['cube_size']} px, overlap {m['overlap']}, min-valid {m['min_valid']}; "
        f"skipped: " + (", ".join(f"{n} {why}" for why, n in m.get("skipped", {}).items() if n) or "none"),
        "  splits: " + ", ".join(f"{s} {n}" for s, n in m.get("splits", {}).items())
        + f" (blocks of {m['split']['block']} cubes, seed {m['split']['seed']})",
        f"  scenes: {', '.join(sorted(index['scene_id'].unique()))}",
        f"  CRSs: {', '.join(sorted(index['crs'].unique()))}; footprints in {m.get('index_crs')}",
        f"  edge cubes: {m.get('edge', {}).get('shifted', 0)} shifted inside, {m.get('edge', {}).get('padded', 0)} padded",
    ]
    if cubes.has_labels:
        counts = cubes.stats["class_counts"]
        total = sum(counts.values()) or 1
        lines.append("  classes (index code name: labelled pixels):")
        for i, c in enumerate(cubes.classes):
            n = counts.get(str(c.code), 0)
            lines.append(f"    {i:3d} {c.code:3d} {c.name}: {n} ({100 * n / total:.1f}%)")
    else:
        lines.append("  no labels")
    lines.append(f"  valid pixels: {cubes.stats['count']}; mean valid fraction {index['valid_fraction'].mean():.3f}")
    return lines + (_series_lines(cubes) if cubes.time_steps else [])


def _series_lines(cubes: CubeStore) -> list[str]:
    """A multi-date store's dates per location, each with the mean valid fraction of its cubes on that date."""
    series = cubes.manifest.get("series") or {}
    padded = sum(int(loc.get("padded", 0)) for loc in series.get("locations", []))
    lines = [f"  time series: T = {cubes.time_steps} dates per cube (rule {series.get('rule')}, "
             f"{padded} padded date{'s' * (padded != 1)}); valid fraction per date (mean over the cubes):"]
    index = cubes.index
    for loc in series.get("locations", []):
        rows = index.loc[index["scene_id"] == loc["scene_id"], "date_valid_fractions"]
        means = np.mean(np.stack([np.asarray(r, np.float64) for r in rows]), axis=0) if len(rows) else None
        dates = [f"{d[:10] if d else 'padded'} {means[t]:.3f}" if means is not None else f"{d[:10] if d else 'padded'}"
                 for t, d in enumerate(loc["dates"])]
        lines.append(f"    {loc['scene_id']}: " + ", ".join(dates))
    return lines


def _form_line(cubes: CubeStore) -> str:
    """What a cube holds and its bytes per pixel on disk (:mod:`geoseg.tiling.compact`)."""
    if cubes.form == "compact":
        bands, layout, area = cubes.dn_bands, cubes.native_layout, cubes.cube_size**2
        if layout is not None:
            what = (f"byte records: {len(bands)} uint16 DN bands at their own resolution + bilinear tables + mask, "
                    f"{int(layout['record_bytes']) / area:.1f} bytes/pixel")
        else:
            what = f"{len(bands)} float32 DN bands on the 10 m grid, NaN = invalid, {4 * len(bands)} bytes/pixel"
        return f"  store form: compact ({what}; the {cubes.num_channels} channels are computed on the training device)"
    return f"  store form: features ({cubes.num_channels} float32 channels, {4 * cubes.num_channels} bytes/pixel)"
