"""The CubeStore: masked feature cubes + labels + index + statistics, in one directory.

Layout (docs/tiling.md has the full description)::

    STORE/
      cubes.zarr/       zarr v3 group: ``cubes`` (N, C, H, W) float32, one chunk per cube;
                        ``labels`` (N, H, W) uint8, one chunk per cube, 255 = ignore
      index.parquet     GeoParquet, one row per cube (cube_id = position in the arrays)
      index.gpkg        the same footprints as a GeoPackage layer ``cubes`` (for QGIS)
      stats.json        per-channel mean / std / count over valid pixels, class pixel counts
      manifest.json     recipe, classes, tiling parameters, source fingerprints, version,
                        ``complete: true`` written last (atomically) when the store is finished

The reader (:class:`CubeStore`) refuses stores that are missing or not complete. The
writer-side primitives (array creation, chunk moves, atomic JSON) live here too so that the
on-disk format is defined in exactly one module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geoseg.config.catalog import ClassDef
from geoseg.errors import GeosegError, MissingFileError
from geoseg.features.recipes import Recipe

__all__ = [
    "CubeStore",
    "IncompleteStoreError",
    "Split",
    "SPLITS",
    "IGNORE_INDEX",
    "ARRAYS_NAME",
    "INDEX_NAME",
    "GPKG_NAME",
    "STATS_NAME",
    "MANIFEST_NAME",
    "create_arrays",
    "open_arrays",
    "chunk_path",
    "encode_chunk",
    "write_chunk",
    "write_json_atomic",
    "read_json",
]

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
IGNORE_INDEX = 255
ARRAYS_NAME = "cubes.zarr"
INDEX_NAME = "index.parquet"
GPKG_NAME = "index.gpkg"
STATS_NAME = "stats.json"
MANIFEST_NAME = "manifest.json"
STORE_FORMAT = 1


class IncompleteStoreError(GeosegError, ValueError):
    """A CubeStore directory exists but its tiling run has not finished."""


# Chunk encodings. Cubes are stored uncompressed: float32 features compress ~1.3× with
# LZ4 at a CPU cost larger than writing the extra bytes (docs/tiling.md), and training reads
# them without decoding. Labels (uint8, long runs) use Blosc-LZ4 with byte shuffle.
_LABEL_BLOSC = {"cname": "lz4", "clevel": 5}
_KEYS = {"name": "default", "separator": "."}


def _codecs(name: str) -> dict[str, Any]:
    from zarr.codecs import BloscCodec

    if name == "cubes":
        return {"compressors": None}
    return {"compressors": [BloscCodec(**_LABEL_BLOSC, shuffle="shuffle")]}


def encode_chunk(name: Literal["cubes", "labels"], block: np.ndarray) -> bytes | memoryview:
    """The bytes zarr stores for one chunk of ``name`` (identical to zarr's own encoding)."""
    if name == "cubes":
        return memoryview(np.ascontiguousarray(block, dtype="<f4")).cast("B")
    import numcodecs

    data = np.ascontiguousarray(block, dtype=np.uint8)
    return numcodecs.Blosc(**_LABEL_BLOSC, shuffle=numcodecs.Blosc.SHUFFLE).encode(data)


def write_chunk(root: str | Path, name: Literal["cubes", "labels"], i: int, block: np.ndarray) -> None:
    """Write cube/label ``i`` straight to its chunk file (no zarr event loop; disjoint files).

    Used by the tiler's workers: each chunk is written by exactly one task, so no lock is
    needed. A chunk cut short by a crash is rewritten on resume (its task has no record).
    """
    path = chunk_path(root, name, i, block.ndim + 1)
    data = encode_chunk(name, block)
    with open(path, "wb") as fh:
        fh.write(data)


def create_arrays(root: str | Path, n: int, channels: int, size: int, labels: bool):
    """Create (overwriting) the zarr v3 group ``root`` with ``cubes`` and optional ``labels``.

    Returns:
        ``(cubes, labels)`` zarr arrays (``labels`` is None without labels).
    """
    import zarr

    group = zarr.open_group(str(root), mode="w", zarr_format=3)
    cubes = group.create_array(
        "cubes", shape=(n, channels, size, size), chunks=(1, channels, size, size),
        dtype="float32", fill_value=0.0, chunk_key_encoding=_KEYS, **_codecs("cubes"),
    )
    lab = None
    if labels:
        lab = group.create_array(
            "labels", shape=(n, size, size), chunks=(1, size, size), dtype="uint8",
            fill_value=IGNORE_INDEX, chunk_key_encoding=_KEYS, **_codecs("labels"),
        )
    return cubes, lab


def open_arrays(root: str | Path, mode: Literal["r", "r+"] = "r"):
    """Open ``(cubes, labels)`` of a zarr group written by :func:`create_arrays`."""
    import zarr

    group = zarr.open_group(str(root), mode=mode, zarr_format=3)
    labels = group.get("labels")
    return group["cubes"], labels


def chunk_path(root: str | Path, name: str, i: int, ndim: int) -> Path:
    """File of chunk ``i`` (first axis) of array ``name`` in a local zarr v3 group.

    :func:`create_arrays` uses the v3 default chunk-key encoding with the ``"."`` separator
    (``c.i.0.0.0``: one flat folder per array, no per-chunk directories to create); chunks
    can therefore be written directly and moved between arrays with identical codecs.
    """
    return Path(root, name, ".".join(["c", str(i), *(["0"] * (ndim - 1))]))


def write_json_atomic(path: str | Path, data: Any, *, fsync: bool = True) -> None:
    """Write JSON to a temporary sibling (fsync'd unless told not to) and rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=False)
        fh.write("\n")
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: str | Path) -> Any:
    with open(path) as fh:
        return json.load(fh)


class CubeStore:
    """Read access to a finished CubeStore (cheap to pickle: arrays reopen lazily).

    Example:
        >>> store = CubeStore.open("cubes")
        >>> x = store.read_cube(store.ids("train")[0])   # (24, 256, 256) float32
    """

    def __init__(self, path: Path, manifest: dict, stats: dict):
        self.path = path
        self.manifest = manifest
        self.stats = stats
        self._arrays = None

    @classmethod
    def open(cls, path: str | Path) -> CubeStore:
        """Open the store at ``path``.

        Raises:
            MissingFileError: no store there.
            IncompleteStoreError: the tiling run that writes it has not finished.
        """
        path = Path(path)
        manifest_file = path / MANIFEST_NAME
        if not manifest_file.exists():
            raise MissingFileError(
                "no CubeStore here (manifest.json missing)", path=path,
                hint="create it with `geoseg tile --catalog data_catalog.yaml --dataset NAME --out DIR`",
            )
        manifest = read_json(manifest_file)
        if not manifest.get("complete"):
            raise IncompleteStoreError(
                "CubeStore is incomplete (its tiling run did not finish)", path=path,
                hint="rerun the same `geoseg tile` command to resume it, or add --overwrite to rebuild",
            )
        for name in (ARRAYS_NAME, INDEX_NAME, STATS_NAME):
            if not (path / name).exists():
                raise IncompleteStoreError(f"CubeStore lacks {name}", path=path,
                                           hint="rebuild it with `geoseg tile ... --overwrite`")
        return cls(path, manifest, read_json(path / STATS_NAME))

    # -- metadata ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.manifest["num_cubes"])

    def __repr__(self) -> str:
        return f"CubeStore({str(self.path)!r}, cubes={len(self)}, size={self.cube_size}, channels={self.num_channels})"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = None
        state.pop("index", None)
        return state

    @property
    def cube_size(self) -> int:
        return int(self.manifest["cube_size"])

    @property
    def recipe(self) -> Recipe:
        return Recipe.from_dict(self.manifest["recipe"])

    @property
    def channel_names(self) -> list[str]:
        return list(self.stats["channel_names"])

    @property
    def num_channels(self) -> int:
        return len(self.stats["channel_names"])

    @property
    def classes(self) -> list[ClassDef]:
        """Classes in training-index order: label value ``i`` is ``classes[i]``."""
        ordered = sorted(self.manifest["classes"], key=lambda c: c["index"])
        return [ClassDef(code=c["code"], name=c["name"], color=c["color"]) for c in ordered]

    @property
    def has_labels(self) -> bool:
        return bool(self.manifest.get("has_labels"))

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.stats["mean"], dtype=np.float64)

    @property
    def std(self) -> np.ndarray:
        return np.asarray(self.stats["std"], dtype=np.float64)

    @cached_property
    def index(self):
        """The index as a GeoDataFrame (row ``i`` describes cube ``i``)."""
        import geopandas as gpd

        return gpd.read_parquet(self.path / INDEX_NAME)

    def ids(self, split: Split | None = None) -> np.ndarray:
        """Cube ids (positions in the arrays) of ``split``, or all of them."""
        index = self.index
        if split is None:
            return index["cube_id"].to_numpy(dtype=np.int64)
        if split not in SPLITS:
            raise GeosegError(f"unknown split {split!r}", hint=f"use one of {', '.join(SPLITS)}")
        return index.loc[index["split"] == split, "cube_id"].to_numpy(dtype=np.int64)

    # -- arrays -----------------------------------------------------------------------------
    def _open(self):
        if self._arrays is None:
            self._arrays = open_arrays(self.path / ARRAYS_NAME)
        return self._arrays

    def _check(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"cube id {i} out of range (store has {len(self)} cubes)")
        return i

    def read_cube(self, i: int) -> np.ndarray:
        """Cube ``i`` as float32 ``(C, H, W)``; invalid pixels are 0 in every channel."""
        return np.asarray(self._open()[0][self._check(i)])

    def read_label(self, i: int) -> np.ndarray:
        """Labels of cube ``i`` as uint8 ``(H, W)`` training indices; 255 = ignore."""
        labels = self._open()[1]
        if labels is None:
            raise GeosegError("this CubeStore has no labels", path=self.path,
                              hint="give the dataset's scenes labels in the catalog and tile again")
        return np.asarray(labels[self._check(i)])

    def read_cubes(self, ids: Sequence[int]) -> np.ndarray:
        """Several cubes as ``(n, C, H, W)`` float32 (one zarr chunk read per cube)."""
        out = np.empty((len(ids), self.num_channels, self.cube_size, self.cube_size), np.float32)
        for k, i in enumerate(ids):
            out[k] = self.read_cube(i)
        return out

    def read_labels(self, ids: Sequence[int]) -> np.ndarray:
        """Several label cubes as ``(n, H, W)`` uint8."""
        out = np.empty((len(ids), self.cube_size, self.cube_size), np.uint8)
        for k, i in enumerate(ids):
            out[k] = self.read_label(i)
        return out
