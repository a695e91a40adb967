"""The CubeStore: masked feature cubes + labels + index + statistics, in one directory.

Layout (docs/tiling.md has the full description)::

    STORE/
      cubes.zarr/       zarr v3 group: ``cubes`` (N, C, H, W) float32, one chunk per cube
                        (a time series: (N, T, C, H, W), see :mod:`geoseg.tiling.series`);
                        (compact form: ``dn`` or ``record``, see :mod:`geoseg.tiling.compact`);
                        ``labels`` (N, H, W) uint8, one chunk per cube, 255 = ignore; named
                        dimensions, coordinates and attributes for xarray (store_metadata.py)
      index.parquet     GeoParquet, one row per cube (cube_id = position in the arrays)
      index.gpkg        the same footprints as a GeoPackage layer ``cubes`` (for QGIS)
      stats.json        per-channel mean / std / count over valid pixels, class pixel counts
      manifest.json     recipe, classes, tiling parameters, source fingerprints, version,
                        ``complete: true`` written last (atomically) when the store is finished

The reader (:class:`CubeStore`) refuses stores that are missing or not complete. The
writer-side primitives (array creation, chunk moves) live here too so that the on-disk format
is defined in exactly one module; its JSON files are written with
:func:`geoseg.utils.atomic.write_json_atomic`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import numpy as np

from geoseg.config.catalog import ClassDef
from geoseg.errors import CorruptStoreError, GeosegError, MissingFileError
from geoseg.features.recipes import Recipe
from geoseg.tiling.compact import (
    DN_FILL,
    CompactReads,
    chunk_bytes,
    cube_array_name,
    cube_array_ndim,
    features_of_dn,
)
from geoseg.tiling.series import SERIES_CUBE_DIMS, time_steps
from geoseg.utils.outputs import legacy_entries

if TYPE_CHECKING:
    from zarr.core.chunk_key_encodings import ChunkKeyEncodingParams

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
    "STAGING_NAME",
    "STORE_KIND",
    "STORE_ENTRIES",
    "CUBE_DIMS",
    "LABEL_DIMS",
    "LEGACY_STORE",
    "create_arrays",
    "open_arrays",
    "chunk_path",
    "encode_chunk",
    "write_chunk",
    "read_json",
    "read_store_json",
    "store_is_complete",
    "verify_store",
    "chunk_inventory",
    "chunk_damage",
    "damage_message",
]

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
IGNORE_INDEX = 255
ARRAYS_NAME = "cubes.zarr"
INDEX_NAME = "index.parquet"
GPKG_NAME = "index.gpkg"
STATS_NAME = "stats.json"
MANIFEST_NAME = "manifest.json"
STAGING_NAME = "_staging"
# what geoseg writes in a store folder (the only entries ``--overwrite`` removes)
STORE_KIND = "cubestore"
STORE_ENTRIES = (ARRAYS_NAME, INDEX_NAME, GPKG_NAME, STATS_NAME, MANIFEST_NAME, STAGING_NAME)
STORE_FORMAT = 1
# zarr v3 ``dimension_names`` of the arrays (what xarray names the axes)
CUBE_DIMS = ("cube", "channel", "y", "x")
LABEL_DIMS = ("cube", "y", "x")
COMPACT_DIMS = {"dn": ("cube", "band", "y", "x"), "record": ("cube", "byte")}  # the compact form's array
LEGACY_STORE = legacy_entries(MANIFEST_NAME, optional=STORE_ENTRIES[:-2] + (STAGING_NAME,),  # stores before markers
                              contains={MANIFEST_NAME: '"geoseg_version"'})


class IncompleteStoreError(GeosegError, ValueError):
    """A CubeStore directory exists but its tiling run has not finished."""


# Chunk encodings. Cubes are stored uncompressed: float32 features compress ~1.3× with
# LZ4 at a CPU cost larger than writing the extra bytes (docs/tiling.md), and training reads
# them without decoding. Labels (uint8, long runs) use Blosc-LZ4 with byte shuffle.
class _BloscOptions(TypedDict):
    cname: Literal["lz4"]
    clevel: int


_LABEL_BLOSC: _BloscOptions = {"cname": "lz4", "clevel": 5}
_KEYS: ChunkKeyEncodingParams = {"name": "default", "separator": "."}


def _codecs(name: str) -> dict[str, Any]:
    from zarr.codecs import BloscCodec

    if name in ("cubes", "dn", "record"):
        return {"compressors": None}
    return {"compressors": [BloscCodec(**_LABEL_BLOSC, shuffle="shuffle")]}


def encode_chunk(name: Literal["cubes", "dn", "record", "labels"], block: np.ndarray) -> bytes | memoryview:
    """The bytes zarr stores for one chunk of ``name`` (identical to zarr's own encoding)."""
    if name == "record":
        return np.ascontiguousarray(block, dtype=np.uint8).data.cast("B")
    if name in ("cubes", "dn"):
        return np.ascontiguousarray(block, dtype="<f4").data.cast("B")
    import numcodecs

    data = np.ascontiguousarray(block, dtype=np.uint8)
    return numcodecs.Blosc(**_LABEL_BLOSC, shuffle=numcodecs.Blosc.SHUFFLE).encode(data)


def write_chunk(root: str | Path, name: Literal["cubes", "dn", "record", "labels"], i: int, block: np.ndarray) -> None:
    """Write cube/label ``i`` straight to its chunk file (no zarr event loop; disjoint files).

    Used by the tiler's workers: each chunk is written by exactly one task, so no lock is
    needed. A chunk cut short by a crash is rewritten on resume (its task has no record).
    """
    path = chunk_path(root, name, i, block.ndim + 1)
    data = encode_chunk(name, block)
    with open(path, "wb") as fh:
        fh.write(data)


def create_arrays(root: str | Path, n: int, channels: int, size: int, labels: bool, *,
                  manifest: dict | None = None):
    """Create (overwriting) the zarr v3 group ``root`` with ``cubes`` and optional ``labels``.

    A compact store's ``manifest`` gives the array ``dn`` (``channels`` = DN bands) or
    ``record`` (byte records) instead of ``cubes`` (:mod:`geoseg.tiling.compact`); a
    multi-date store's, cubes ``(n, T, channels, size, size)`` (:mod:`geoseg.tiling.series`).

    Returns:
        ``(cubes, labels)`` zarr arrays (``labels`` is None without labels).
    """
    import zarr

    group = zarr.open_group(str(root), mode="w", zarr_format=3)
    name = cube_array_name(manifest or {})
    steps = time_steps(manifest or {})
    if name == "record":  # a missing record reads as zeros: no valid pixel, which a kept cube never has
        record = chunk_bytes(manifest or {})
        cubes = group.create_array(name, shape=(n, record), chunks=(1, record), dtype="uint8", fill_value=0,
                                   chunk_key_encoding=_KEYS, dimension_names=COMPACT_DIMS[name], **_codecs(name))
    elif steps:
        cubes = group.create_array(name, shape=(n, steps, channels, size, size), chunks=(1, steps, channels, size, size),
                                   dtype="float32", fill_value=float("nan"), chunk_key_encoding=_KEYS,
                                   dimension_names=SERIES_CUBE_DIMS, **_codecs(name))
    else:
        cubes = group.create_array(
            name, shape=(n, channels, size, size), chunks=(1, channels, size, size),
            # NaN: a chunk that is missing reads as NaN, never as plausible (all-zero) features
            # (compact DN: -inf, as NaN marks invalid pixels there)
            dtype="float32", fill_value=float("nan") if name == "cubes" else DN_FILL, chunk_key_encoding=_KEYS,
            dimension_names=CUBE_DIMS if name == "cubes" else COMPACT_DIMS[name], **_codecs(name),
        )
    lab = None
    if labels:
        lab = group.create_array(
            "labels", shape=(n, size, size), chunks=(1, size, size), dtype="uint8",
            fill_value=IGNORE_INDEX, chunk_key_encoding=_KEYS, dimension_names=LABEL_DIMS, **_codecs("labels"),
        )
    return cubes, lab


def open_arrays(root: str | Path, mode: Literal["r", "r+"] = "r"):
    """Open ``(cubes, labels)`` of a zarr group written by :func:`create_arrays`."""
    import zarr

    group = zarr.open_group(str(root), mode=mode, zarr_format=3)
    labels = group.get("labels")
    return group[next((a for a in ("cubes", "dn", "record") if a in group), "cubes")], labels


def chunk_path(root: str | Path, name: str, i: int, ndim: int) -> Path:
    """File of chunk ``i`` (first axis) of array ``name`` in a local zarr v3 group.

    :func:`create_arrays` uses the v3 default chunk-key encoding with the ``"."`` separator
    (``c.i.0.0.0``: one flat folder per array, no per-chunk directories to create); chunks
    can therefore be written directly and moved between arrays with identical codecs.
    """
    return Path(root, name, ".".join(["c", str(i), *(["0"] * (ndim - 1))]))


def read_json(path: str | Path) -> Any:
    """The parsed JSON content of ``path``."""
    with open(path) as fh:
        return json.load(fh)


_REBUILD = "restore the file from a backup, or rebuild the store with `geoseg tile ... --overwrite`"
# without a readable manifest geoseg cannot tell what the folder holds, so --overwrite does not replace it
_MANIFEST_FIX = "restore it from a backup, or delete the store folder yourself and run `geoseg tile` again"
# manifest keys every reader relies on
_MANIFEST_KEYS = ("num_cubes", "cube_size", "channel_names", "classes", "recipe", "has_labels")


def read_store_json(path: str | Path, *, keys: Sequence[str] = (), hint: str | None = None) -> dict:
    """A JSON object of a store (manifest, statistics); damage is a one-line ``CorruptStoreError``."""
    path = Path(path)
    hint = hint or (_MANIFEST_FIX if path.name == MANIFEST_NAME else _REBUILD)
    try:
        data = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        what = (f"{err.msg} at line {err.lineno} column {err.colno}" if isinstance(err, json.JSONDecodeError)
                else type(err).__name__)
        raise CorruptStoreError(f"damaged CubeStore file: not valid JSON ({what})", path=path, hint=hint) from None
    if not isinstance(data, dict):
        raise CorruptStoreError(f"damaged CubeStore file: a JSON {type(data).__name__}, not an object",
                                path=path, hint=hint)
    missing = [k for k in keys if k not in data]
    if missing:
        raise CorruptStoreError(f"damaged CubeStore file: lacks {', '.join(missing)}", path=path, hint=hint)
    return data


def store_is_complete(path: str | Path) -> bool:
    """Whether the store at ``path`` has a readable manifest saying ``complete`` (nothing else is checked).

    The cheap test of "did tiling finish?" (the pipeline's tile step); :meth:`CubeStore.open`
    checks the rest.
    """
    try:
        return bool(read_store_json(Path(path) / MANIFEST_NAME).get("complete"))
    except CorruptStoreError:  # missing, unreadable or not an object
        return False


def verify_store(path: str | Path, manifest: dict) -> dict:
    """Check a complete store's manifest keys, statistics and chunk files; returns the statistics.

    Raises:
        CorruptStoreError: naming the damaged file (for chunks: the cube id and chunk file).
    """
    path = Path(path)
    missing = [k for k in _MANIFEST_KEYS if k not in manifest]
    if missing:
        raise CorruptStoreError(f"damaged CubeStore file: lacks {', '.join(missing)}",
                                path=path / MANIFEST_NAME, hint=_MANIFEST_FIX)
    stats = read_store_json(path / STATS_NAME, keys=("channel_names", "mean", "std"))
    damage = chunk_damage(path, manifest)
    if damage:
        raise damage_message(path, damage)
    return stats


def _chunk_files(folder: Path) -> dict[str, int]:
    """Size of every chunk file in a flat zarr array folder (one scandir, a stat per chunk)."""
    try:
        with os.scandir(folder) as entries:
            return {e.name: e.stat().st_size for e in entries if e.name.startswith("c.")}
    except FileNotFoundError:
        return {}


def chunk_inventory(root: str | Path, n: int, labels: bool) -> dict:
    """What :func:`chunk_damage` checks later, recorded in the manifest by the tiler's finalize.

    Cube chunks are uncompressed, so their size is fixed; label chunks are compressed, so
    their sizes are listed one by one.
    """
    inventory: dict[str, Any] = {"count": int(n)}
    if labels:
        files = _chunk_files(Path(root, "labels"))
        inventory["label_bytes"] = [files.get(chunk_path(root, "labels", i, 3).name, 0) for i in range(n)]
    return inventory


def chunk_damage(store: str | Path, manifest: dict) -> list[tuple[int, Path, str]]:
    """Missing or wrongly sized chunk files of a complete store: ``(cube id, file, what)``.

    Costs one directory listing and a stat per chunk (no chunk is read): a cube chunk must
    have exactly ``4·C·H·W`` bytes (compact form: ``C`` DN bands); a label chunk must exist, non-empty, with the size the
    manifest's ``chunks`` inventory recorded (stores written before it: any size).
    """
    root = Path(store, ARRAYS_NAME)
    n = int(manifest["num_cubes"])
    expected = chunk_bytes(manifest)
    inventory = manifest.get("chunks") or {}
    damage: list[tuple[int, Path, str]] = []
    cubes = cube_array_name(manifest)
    arrays = [(cubes, cube_array_ndim(manifest))] + ([("labels", 3)] if manifest.get("has_labels") else [])
    for name, ndim in arrays:
        files = _chunk_files(root / name)
        recorded = inventory.get("label_bytes") if name == "labels" else None
        if recorded is not None and len(recorded) != n:
            recorded = None
        for i in range(n):
            path = chunk_path(root, name, i, ndim)
            got = files.get(path.name)
            want = expected if name == cubes else (recorded[i] if recorded is not None else None)
            if got is None:
                damage.append((i, path, "is missing"))
            elif (want is not None and got != want) or got == 0:
                damage.append((i, path, f"has {got} bytes instead of {want}" if want else "is empty"))
    damage.sort(key=lambda d: d[0])
    return damage


def damage_message(store: str | Path, damage: list[tuple[int, Path, str]]) -> CorruptStoreError:
    """One line naming the store, the first damaged cube and its chunk file, and the fix."""
    i, path, what = damage[0]
    rel = path.relative_to(store) if path.is_relative_to(store) else path
    more = ""
    if len(damage) > 1:
        others = sorted({d[0] for d in damage[1:]} - {i})
        listed = ", ".join(map(str, others[:8])) + (", ..." if len(others) > 8 else "")
        more = f"; {len(damage) - 1} more damaged chunk{'s' if len(damage) > 2 else ''}" + (
            f" (cube{'s' if len(others) > 1 else ''} {listed})" if others else "")
    return CorruptStoreError(f"damaged CubeStore: the chunk file {rel} of cube {i} {what}{more}",
                             path=store, hint=_REBUILD)


class CubeStore(CompactReads):
    """Read access to a finished CubeStore (cheap to pickle: arrays reopen lazily).

    A compact store's DN, records and radiometry are read with :class:`~geoseg.tiling.compact.CompactReads`.
    A store's arrays are also a self-describing xarray dataset (channel names, classes, per-cube
    georeferencing): ``xr.open_zarr(store.path / "cubes.zarr")`` (docs/tiling.md).

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
    def open(cls, path: str | Path, *, verify: bool = True) -> CubeStore:
        """Open the store at ``path``.

        With ``verify`` (the default) every chunk file of the arrays is checked to exist with
        the right size (a stat per chunk, no data read; :func:`chunk_damage`), so that a
        missing or truncated chunk is reported instead of being read as fill values.

        Raises:
            MissingFileError: no store there.
            IncompleteStoreError: the tiling run that writes it has not finished.
            CorruptStoreError: a damaged manifest, statistics or chunk file.
        """
        path = Path(path)
        manifest_file = path / MANIFEST_NAME
        if not manifest_file.exists():
            raise MissingFileError(
                "no CubeStore here (manifest.json missing)", path=path,
                hint="create it with `geoseg tile --catalog data_catalog.yaml --dataset NAME --out DIR`",
            )
        manifest = read_store_json(manifest_file)
        if not manifest.get("complete"):
            raise IncompleteStoreError(
                "CubeStore is incomplete (its tiling run did not finish)", path=path,
                hint="rerun the same `geoseg tile` command to resume it, or add --overwrite to rebuild",
            )
        for name in (ARRAYS_NAME, INDEX_NAME, STATS_NAME):
            if not (path / name).exists():
                raise IncompleteStoreError(f"CubeStore lacks {name}", path=path,
                                           hint="rebuild it with `geoseg tile ... --overwrite`")
        if verify:
            stats = verify_store(path, manifest)
        else:
            stats = read_store_json(path / STATS_NAME, keys=("channel_names", "mean", "std"))
        return cls(path, manifest, stats)

    # -- metadata ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.manifest["num_cubes"])

    def __repr__(self) -> str:
        steps = f", time_steps={self.time_steps}" if self.time_steps else ""
        return (f"CubeStore({str(self.path)!r}, cubes={len(self)}, size={self.cube_size}, "
                f"channels={self.num_channels}{steps})")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = None
        state.pop("index", None)
        return state

    @property
    def cube_size(self) -> int:
        """Cube side length in pixels."""
        return int(self.manifest["cube_size"])

    @property
    def time_steps(self) -> int | None:
        """Dates per cube of a multi-date store (cubes ``(T, C, H, W)``); None for a single-date store."""
        return time_steps(self.manifest)

    @property
    def cube_shape(self) -> tuple[int, ...]:
        """Shape of one cube: ``(C, H, W)``, or ``(T, C, H, W)`` for a multi-date store."""
        size = self.cube_size
        return ((self.time_steps,) if self.time_steps else ()) + (self.num_channels, size, size)

    @property
    def recipe(self) -> Recipe:
        """The feature recipe the cubes were made with."""
        return Recipe.from_dict(self.manifest["recipe"])

    @property
    def channel_names(self) -> list[str]:
        """Name of each channel."""
        return list(self.stats["channel_names"])

    @property
    def num_channels(self) -> int:
        """Number of channels."""
        return len(self.stats["channel_names"])

    @property
    def classes(self) -> list[ClassDef]:
        """Classes in training-index order: label value ``i`` is ``classes[i]``."""
        ordered = sorted(self.manifest["classes"], key=lambda c: c["index"])
        return [ClassDef(code=c["code"], name=c["name"], color=c["color"]) for c in ordered]

    @property
    def has_labels(self) -> bool:
        """True when the cubes have labels."""
        return bool(self.manifest.get("has_labels"))

    @property
    def mean(self) -> np.ndarray:
        """Per-channel mean of the valid pixels of all cubes."""
        return np.asarray(self.stats["mean"], dtype=np.float64)

    @property
    def std(self) -> np.ndarray:
        """Per-channel standard deviation of the valid pixels of all cubes."""
        return np.asarray(self.stats["std"], dtype=np.float64)

    @cached_property
    def index(self):
        """The index as a GeoDataFrame (row ``i`` describes cube ``i``)."""
        import geopandas as gpd

        try:
            index = gpd.read_parquet(self.path / INDEX_NAME)
        except Exception as err:  # pyarrow raises its own error types for a damaged file
            why = (str(err).splitlines() or [type(err).__name__])[0][:160]
            raise CorruptStoreError(f"damaged CubeStore file: not readable as GeoParquet ({why})",
                                    path=self.path / INDEX_NAME, hint=_REBUILD) from None
        if len(index) != len(self) or "cube_id" not in index or "split" not in index:
            raise CorruptStoreError(f"damaged CubeStore file: {len(index)} rows for {len(self)} cubes",
                                    path=self.path / INDEX_NAME, hint=_REBUILD)
        return index

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

    def _damaged(self, name: str, i: int, what: str) -> CorruptStoreError:
        ndim = 3 if name == "labels" else cube_array_ndim(self.manifest)
        return damage_message(self.path, [(i, chunk_path(self.path / ARRAYS_NAME, name, i, ndim), what)])

    def read_cube(self, i: int) -> np.ndarray:
        """Cube ``i`` as float32 ``(C, H, W)``; invalid pixels are 0 in every channel.

        A multi-date store's cube is ``(T, C, H, W)``: each date masked on its own, padded dates
        0 everywhere (the index's ``dates`` are None there).

        A compact store's channels are computed from its DN (on the CPU, with the recipe's
        kernel; equal to the default form's cube bit for bit).

        Raises:
            CorruptStoreError: the chunk file is truncated, or missing (it reads as the NaN
                fill value, which real features never hold).
        """
        if self.form == "compact":
            offset, scale = self.radiometry(i)
            return features_of_dn(self.read_dn(i), float(offset), float(scale), self.recipe)
        i = self._check(i)
        try:
            cube = np.asarray(self._open()[0][i])
        except ValueError as err:  # zarr: "cannot reshape array of size ..." for a truncated chunk
            raise self._damaged("cubes", i, f"cannot be read ({str(err).splitlines()[0][:120]})") from None
        if cube.size and cube.flat[0] != cube.flat[0]:  # NaN: no chunk file (one compare per cube)
            raise self._damaged("cubes", i, "is missing")
        return cube

    def read_label(self, i: int) -> np.ndarray:
        """Labels of cube ``i`` as uint8 ``(H, W)`` training indices; 255 = ignore."""
        labels = self._open()[1]
        if labels is None:
            raise GeosegError("this CubeStore has no labels", path=self.path,
                              hint="give the dataset's scenes labels in the catalog and tile again")
        i = self._check(i)
        try:
            return np.asarray(labels[i])
        except (ValueError, RuntimeError) as err:  # a truncated chunk: the LZ4 decoder fails
            raise self._damaged("labels", i, f"cannot be read ({str(err).splitlines()[0][:120]})") from None

    def read_cubes(self, ids: Sequence[int]) -> np.ndarray:
        """Several cubes as ``(n, C, H, W)`` float32, ``(n, T, C, H, W)`` multi-date (one chunk read per cube)."""
        out = np.empty((len(ids), *self.cube_shape), np.float32)
        for k, i in enumerate(ids):
            out[k] = self.read_cube(i)
        return out

    def read_labels(self, ids: Sequence[int]) -> np.ndarray:
        """Several label cubes as ``(n, H, W)`` uint8."""
        out = np.empty((len(ids), self.cube_size, self.cube_size), np.uint8)
        for k, i in enumerate(ids):
            out[k] = self.read_label(i)
        return out
