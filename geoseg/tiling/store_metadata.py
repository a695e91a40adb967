"""What makes ``cubes.zarr`` a self-describing dataset for xarray, dask and other zarr readers.

``xr.open_zarr(STORE / "cubes.zarr")`` reads the arrays' zarr v3 ``dimension_names``
(:data:`~geoseg.tiling.store.CUBE_DIMS`, :data:`~geoseg.tiling.store.LABEL_DIMS`), the
1-D arrays named like a dimension as index coordinates (``cube``: ids, ``channel``: channel
names, ``affine``: the letters of the affine coefficients), the per-cube arrays listed in the
``coordinates`` attribute as further coordinates (``split``, ``scene_id``, ``crs``,
``transform`` and the pixel-centre coordinates ``xc``/``yc``), and the group and array
attributes (channel names, the class map as CF ``flag_*`` plus ``classes``, tiling
parameters). The metadata is consolidated into the group's ``zarr.json`` so that opening it
reads one file. CubeStore itself needs none of this: stores written before it open as before.

A multi-date store's ``cubes`` has dimensions ``cube, time, channel, y, x``; ``time`` indexes
the dates of a cube (``0..T-1``), whose acquisitions are the coordinate ``dates`` (cube, time;
empty text for a padded date) with their valid fractions ``date_valid_fraction``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from geoseg.tiling.series import SERIES_CUBE_DIMS, time_steps
from geoseg.tiling.store import COMPACT_DIMS, CUBE_DIMS, IGNORE_INDEX, LABEL_DIMS
from geoseg.utils.atomic import write_json_atomic

__all__ = ["describe_arrays"]

_AFFINE = ("a", "b", "c", "d", "e", "f")
_PER_CUBE = ("split", "scene_id", "crs", "transform")
_ROWS = 4096  # cubes per chunk of the coordinate arrays (≤ 8 MB of 256 px pixel centres)


def describe_arrays(root: str | Path, manifest: dict, index: Any) -> None:
    """Write coordinates, attributes and dimension names into the zarr group ``root``.

    Args:
        root: the store's ``cubes.zarr`` (its ``cubes`` and optional ``labels`` exist).
        manifest: the store's manifest (``channel_names``, ``classes``, tiling parameters).
        index: the store's index (row ``i`` = cube ``i``: ``split``, ``scene_id``, ``crs``,
            ``transform``).

    Repeatable: every array it writes is overwritten, the cube and label chunks are untouched.
    """
    import zarr

    root = Path(root)
    n = len(index)
    transforms = np.array([list(t) for t in index["transform"]], dtype=np.float64).reshape(n, 6)
    # not from consolidated metadata: a repeated run must see the arrays as they are on disk
    group = zarr.open_group(str(root), mode="r+", zarr_format=3, use_consolidated=False)
    coords = list(_PER_CUBE)
    _write(group, "cube", index["cube_id"].to_numpy(np.int64), ("cube",), long_name="cube id (row of index.parquet)")
    _write(group, "channel", manifest["channel_names"], ("channel",), long_name="feature channel")
    _write(group, "affine", _AFFINE, ("affine",), long_name="affine coefficient (x = a·col + b·row + c, "
                                                               "y = d·col + e·row + f; rasterio order)")
    _write(group, "split", index["split"], ("cube",), long_name="train / val / test")
    _write(group, "scene_id", index["scene_id"], ("cube",), long_name="scene the cube was cut from")
    _write(group, "crs", index["crs"], ("cube",), long_name="CRS of the cube's transform (EPSG:code or WKT)")
    _write(group, "transform", transforms, ("cube", "affine"),
           long_name="affine transform of the cube's pixel grid, in its crs")
    if np.all(transforms[:, [1, 3]] == 0):  # north-up grids: x depends on the column only
        centres = np.arange(int(manifest["cube_size"])) + 0.5
        _write(group, "xc", transforms[:, [2]] + transforms[:, [0]] * centres, ("cube", "x"),
               long_name="x of pixel centres in the cube's crs", standard_name="projection_x_coordinate")
        _write(group, "yc", transforms[:, [5]] + transforms[:, [4]] * centres, ("cube", "y"),
               long_name="y of pixel centres in the cube's crs", standard_name="projection_y_coordinate")
        coords += ["xc", "yc"]
    steps = time_steps(manifest)
    if steps:
        _write(group, "time", np.arange(steps, dtype=np.int64), ("time",), long_name="date of the cube (0 = earliest)")
        _write(group, "dates", [[d or "" for d in row] for row in index["dates"]], ("cube", "time"),
               long_name="acquisition datetime of each date of the cube (empty: a padded, fully masked date)")
        _write(group, "date_valid_fraction", np.array([list(r) for r in index["date_valid_fractions"]],
                                                      dtype=np.float64).reshape(n, steps), ("cube", "time"),
               long_name="fraction of the cube's pixels valid on that date")
    if "cubes" in group:
        _describe(root, group, "cubes", SERIES_CUBE_DIMS if steps else CUBE_DIMS, {
            "long_name": "masked feature cubes", "coordinates": " ".join(
                coords + (["dates", "date_valid_fraction"] if steps else [])),
            "mask_channels": int(manifest.get("mask_channels", 0)),
            "comment": "invalid pixels are 0 in every channel" + (" of that date" if steps else ""),
        })
    for name, dims in COMPACT_DIMS.items():  # the compact form: decoded by geoseg.tiling.compact
        if name in group:
            _describe(root, group, name, dims, {
                "long_name": "compact cubes (the recipe's source DN; channels computed by geoseg.tiling.compact)"})
    if "labels" in group:
        _describe(root, group, "labels", LABEL_DIMS, {
            "long_name": "class index", "coordinates": " ".join(coords), **_class_attrs(manifest),
        })
    group.update_attributes({
        "title": f"geoseg CubeStore of dataset {manifest.get('dataset')!r}",
        "channel_names": list(manifest["channel_names"]),
        "classes": manifest["classes"],
        "ignore_index": IGNORE_INDEX,
        "recipe": manifest["recipe"].get("name") if isinstance(manifest.get("recipe"), dict) else None,
        **{k: manifest[k] for k in ("cube_size", "overlap", "stride", "format", "geoseg_version", "time_steps")
           if k in manifest},
    })
    with warnings.catch_warnings():  # "not part of the v3 specification yet": zarr-python and xarray read it
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(str(root), zarr_format=3)


def _write(group, name: str, values, dims: tuple[str, ...], **attrs: str) -> None:
    """A per-cube array, chunked by ``_ROWS`` cubes (strings as zarr's variable-length UTF-8)."""
    data = np.asarray(values)
    strings = data.dtype.kind in "OUT"
    chunks = (min(len(data), _ROWS), *data.shape[1:])
    array = group.create_array(name, shape=data.shape, dtype=str if strings else data.dtype, chunks=chunks,
                               dimension_names=dims, attributes=attrs, overwrite=True)
    array[...] = data.astype(object) if strings else data


def _describe(root: Path, group, name: str, dims: tuple[str, ...], attrs: dict) -> None:
    """Set an array's attributes; give it dimension names if it was created without them."""
    array = group[name]
    if array.metadata.dimension_names != dims:  # final arrays created by a geoseg before they were named
        meta_file = root / name / "zarr.json"
        meta = json.loads(meta_file.read_text())
        write_json_atomic(meta_file, {**meta, "dimension_names": list(dims)}, indent=2)
        array = group[name]
    array.update_attributes(attrs)


def _class_attrs(manifest: dict) -> dict:
    """The class map of the label values: CF ``flag_*`` attributes plus geoseg's ``classes``."""
    classes = sorted(manifest["classes"], key=lambda c: c["index"])
    return {
        "flag_values": [c["index"] for c in classes],
        "flag_meanings": " ".join(c["name"].replace(" ", "_") for c in classes),
        "flag_colors": " ".join(c["color"] for c in classes),
        "classes": classes,
        "ignore_index": IGNORE_INDEX,
        "comment": f"label value i is classes[i] (its catalog code, name and colour); {IGNORE_INDEX} = ignore",
    }
