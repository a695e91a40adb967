"""The compact CubeStore form: what the recipe's channels are computed from, instead of the channels.

``geoseg tile --store compact`` writes, instead of the ``cubes`` array of float32 recipe channels
(24 for ``s2_24``: 96 bytes per pixel), the DN of the recipe's ``required_bands`` and the valid
mask, and the channels are computed where they are used: on the batch, on the training device
(:func:`geoseg.data.dataset.dn_batch_features` → :func:`geoseg.features.torch_features.features_from_dn_torch`),
or on the CPU by :meth:`CubeStore.read_cube <geoseg.tiling.store.CubeStore.read_cube>`. Both equal
the default store's cubes bit for bit, and ``stats.json`` is the same file (the tiler computes the
channels in both forms and takes their statistics from them). The scene's radiometry
(``reflectance = (DN + offset) / scale``) goes into the index (``dn_offset``, ``dn_scale``: cubes
of one store may come from processing baselines with different offsets).

The DN the feature kernel reads (:func:`geoseg.io.reader.read_raw`) are integers for the bands on
the 10 m grid but float32 bilinear interpolants for the 20 m and 60 m bands (20 m: multiples of
1/16, up to 20 significant bits; 60 m: arbitrary float32), and the indices are computed in float64
from exactly these values, so uint16 DN on the 10 m grid cannot be exact. Two layouts are exact:

- ``native`` (``dn_layout.kind``; used whenever it applies): one byte record per cube (array
  ``record`` ``(N, R)`` uint8) with the 16-bit DN of every band at its own resolution, the cube's
  bilinear tables and the mask; the batch transform redoes the interpolation with the same float32
  operations (:mod:`geoseg.tiling.compact_native`). ~12 bytes per pixel for ``s2_24`` from
  Sentinel-2 band files (7.8× fewer than the features).
- ``grid`` (the fallback: sources that are not 8/16-bit integer DN, or scenes whose bands relate
  differently to their grids): array ``dn`` ``(N, B, H, W)`` float32 with the DN on the 10 m grid
  as the kernel reads them and NaN in every band at invalid pixels (a valid pixel's DN are always
  finite): 44 bytes per pixel for ``s2_24``; fill value -inf (a missing chunk, never stored).

docs/tiling.md ("The compact form") and docs/benchmarks_loader.md have the layout and the
measurements.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from rasterio.windows import Window

from geoseg.errors import CorruptStoreError, GeosegError
from geoseg.features.recipes import Recipe
from geoseg.tiling.series import time_steps

if TYPE_CHECKING:
    from geoseg.io.scene import Scene

__all__ = [
    "CompactReads",
    "StoreForm",
    "STORE_FORMS",
    "DN_ARRAY",
    "DN_FILL",
    "store_form",
    "native_layout",
    "cube_array_name",
    "cube_array_ndim",
    "chunk_bytes",
    "array_channels",
    "form_manifest",
    "read_features_and_dn",
    "dn_cube",
    "radiometry",
    "features_of_dn",
]

StoreForm = Literal["features", "compact"]
STORE_FORMS: tuple[StoreForm, ...] = ("features", "compact")
DN_ARRAY = "dn"
DN_FILL = float("-inf")  # fill value of the dn array: a missing chunk reads as -inf (never stored)


def store_form(manifest: dict) -> StoreForm:
    """The form of the store a manifest describes (stores written before the option: features)."""
    return "compact" if manifest.get("form") == "compact" else "features"


def native_layout(manifest: dict) -> dict | None:
    """The native layout of a compact store (:mod:`geoseg.tiling.compact_native`), or None."""
    layout = manifest.get("dn_layout") if store_form(manifest) == "compact" else None
    return layout if isinstance(layout, dict) and layout.get("kind") == "native" else None


def cube_array_name(manifest: dict) -> Literal["cubes", "dn", "record"]:
    """The zarr array holding the cubes a manifest describes."""
    if store_form(manifest) != "compact":
        return "cubes"
    return "record" if native_layout(manifest) else "dn"


def cube_array_ndim(manifest: dict) -> int:
    """Dimensions of the cube array (records are ``(N, bytes)``; multi-date cubes ``(N, T, C, H, W)``)."""
    return 2 if native_layout(manifest) else 5 if time_steps(manifest) else 4


def chunk_bytes(manifest: dict) -> int:
    """Bytes of one (uncompressed) chunk of the cube array."""
    layout = native_layout(manifest)
    if layout is not None:
        return int(layout["record_bytes"])
    return 4 * (time_steps(manifest) or 1) * array_channels(manifest) * int(manifest["cube_size"]) ** 2


def array_channels(manifest: dict) -> int:
    """Channels of one chunk of the cube array: the recipe's channels, or its DN bands."""
    if store_form(manifest) == "compact":
        return len(manifest["dn_bands"])
    return len(manifest["channel_names"])


def form_manifest(form: StoreForm, recipe: Recipe, layout: dict | None = None) -> dict:
    """The manifest entries of ``form`` (``layout``: the native layout, when it applies)."""
    if form == "compact":
        return {"form": form, "dn_bands": list(recipe.required_bands), "dn_invalid": "nan",
                "dn_layout": layout or {"kind": "grid"}}
    return {"form": form}


def read_features_and_dn(scene: Scene, window: Window, recipe: Recipe) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`~geoseg.features.stack.read_features` and the DN it computed them from.

    Returns:
        ``(features, valid, dn)``: as ``read_features`` returns them, and float32 DN
        ``(len(recipe.required_bands), h, w)`` with NaN at invalid pixels.
    """
    from geoseg.features.stack import features_from_dn
    from geoseg.io.reader import read_raw, read_valid

    bands = recipe.required_bands
    scene.require_bands(bands, f"recipe {recipe.name}")
    raw, invalid = read_raw(scene, window, bands)
    valid = read_valid(scene, window, invalid)
    offset, scale = radiometry(scene)
    features = features_from_dn(raw, valid, offset, scale, recipe)
    dn = np.asarray(raw, dtype=np.float32)
    dn[:, ~valid] = np.nan
    return features, valid, dn


def dn_cube(dn: np.ndarray, cols: slice, height: int, width: int, size: int) -> np.ndarray:
    """The ``(B, size, size)`` DN chunk of a cube: columns ``cols`` of ``dn``, NaN (invalid) padding."""
    if height == size and width == size:
        return np.ascontiguousarray(dn[:, :, cols])
    cube = np.full((dn.shape[0], size, size), np.nan, dtype=np.float32)
    cube[:, :height, :width] = dn[:, :, cols]
    return cube


def radiometry(scene: Scene) -> tuple[float, float]:
    """``(offset, scale)`` of a scene: reflectance = (DN + offset) / scale."""
    return float(scene.offset.offset), float(scene.scale)


def features_of_dn(dn: np.ndarray, offset: float, scale: float, recipe: Recipe) -> np.ndarray:
    """The recipe's channels ``(C, H, W)`` float32 of one compact cube, on the CPU (the recipe's kernel)."""
    from geoseg.features.stack import features_from_dn

    valid = ~np.isnan(dn[0])
    return features_from_dn(np.where(valid[None], dn, 0.0).astype(np.float32), valid, offset, scale, recipe)


_REBUILD = "rebuild the store with `geoseg tile ... --store compact --overwrite`"


class CompactReads:
    """The reads of a compact store, mixed into :class:`~geoseg.tiling.store.CubeStore`."""

    path: Path
    manifest: dict
    index: Any

    if TYPE_CHECKING:  # provided by CubeStore
        def _open(self) -> tuple[Any, Any]: ...
        def _check(self, i: int) -> int: ...
        def _damaged(self, name: str, i: int, what: str) -> CorruptStoreError: ...

    @property
    def form(self) -> StoreForm:
        """``features`` (the recipe's channels) or ``compact`` (DN + valid mask, :mod:`geoseg.tiling.compact`)."""
        return store_form(self.manifest)

    @property
    def dn_bands(self) -> list[str]:
        """Bands of a compact store's DN (the recipe's required bands, in this order)."""
        self._require_compact()
        return list(self.manifest["dn_bands"])

    @property
    def native_layout(self) -> dict | None:
        """The native layout of a compact store's byte records (:mod:`geoseg.tiling.compact_native`), or None."""
        return native_layout(self.manifest)

    def _require_compact(self) -> None:
        if self.form != "compact":
            raise GeosegError("this CubeStore holds the recipe's channels, not DN", path=self.path,
                              hint="read its cubes with read_cube (DN are kept by `geoseg tile --store compact`)")

    @cached_property
    def _radiometry(self) -> np.ndarray:
        index = self.index
        if "dn_offset" not in index or "dn_scale" not in index:
            raise CorruptStoreError("damaged CubeStore file: a compact store's index lacks dn_offset, dn_scale",
                                    path=self.path / "index.parquet", hint=_REBUILD)
        return np.stack([index["dn_offset"].to_numpy(np.float64), index["dn_scale"].to_numpy(np.float64)], axis=1)

    def radiometry(self, i: int) -> np.ndarray:
        """``(offset, scale)`` float64 of compact cube ``i``: reflectance = (DN + offset) / scale."""
        self._require_compact()
        return self._radiometry[self._check(i)]

    def read_dn(self, i: int) -> np.ndarray:
        """DN of compact cube ``i`` as float32 ``(B, H, W)`` (:attr:`dn_bands`); NaN at invalid pixels.

        Raises:
            CorruptStoreError: the chunk file is truncated or missing.
        """
        self._require_compact()
        layout = self.native_layout
        if layout is not None:  # decoded as the batch transform does on a CPU
            from geoseg.tiling.compact_native import decode_records_numpy

            return decode_records_numpy(self.read_record(i)[None], layout, self.dn_bands)[0]
        i = self._check(i)
        try:
            dn = np.asarray(self._open()[0][i])
        except ValueError as err:  # zarr: "cannot reshape array of size ..." for a truncated chunk
            raise self._damaged("dn", i, f"cannot be read ({str(err).splitlines()[0][:120]})") from None
        if dn.size and dn.flat[0] == DN_FILL:  # no chunk file (one compare per cube)
            raise self._damaged("dn", i, "is missing")
        return dn

    def read_record(self, i: int) -> np.ndarray:
        """The byte record ``(R,)`` uint8 of cube ``i`` of a compact store in the native layout.

        Raises:
            CorruptStoreError: the chunk file is truncated or missing (it reads as zeros: no valid pixel).
        """
        layout = self.native_layout
        if layout is None:
            raise GeosegError("this CubeStore holds no byte records", path=self.path, hint="read it with read_cube")
        i = self._check(i)
        try:
            record = np.asarray(self._open()[0][i])
        except ValueError as err:  # zarr: "cannot reshape array of size ..." for a truncated chunk
            raise self._damaged("record", i, f"cannot be read ({str(err).splitlines()[0][:120]})") from None
        if not record[int(layout["valid_offset"]):].any():  # the fill value: no chunk file
            raise self._damaged("record", i, "is missing")
        return record
