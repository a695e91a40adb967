"""The land-cover outputs of one scene, fed block by block by the :class:`~geoseg.stitch.Stitcher`.

:class:`LandCoverWriter` is a block sink: each :class:`~geoseg.stitch.StitchedBlock` becomes
class codes (0 where the input is invalid) and, optionally, confidence (max probability as
0–100, 255 = nodata). Used as a context manager, it writes everything under temporary names
and, only when the whole scene went through without error, converts to COG, polygonises,
renames the outputs into place and writes the ``.aux.xml``/``.qml`` sidecars after the
``.tif`` exists (the confidence raster gets its own ``.qml``: viridis, 0–100 %). On error
nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from geoseg.config.catalog import ClassDef
from geoseg.errors import ConfigError
from geoseg.io.grid import Grid
from geoseg.stitch.cog import OverviewResampling, StreamingCOG, temp_sibling
from geoseg.stitch.sidecars import (
    CONFIDENCE_RANGE,
    aux_xml_path,
    class_colormap,
    qml_path,
    write_confidence_style,
    write_sidecars,
)
from geoseg.stitch.stitcher import StitchedBlock
from geoseg.utils.outputs import (
    check_not_input,
    claim_file,
    clean_stale_temporaries,
    make_parents,
    remove_empty,
)

__all__ = ["LandCoverWriter", "check_landcover_outputs", "classes_from_probs", "CONFIDENCE_NODATA", "BAND_DESCRIPTION"]

CONFIDENCE_NODATA = 255
RASTER_SUFFIXES = (".tif", ".tiff")
BAND_DESCRIPTION = "land_cover"
CONFIDENCE_BAND_TAGS = {
    "quantity": "probability of the predicted class", "units": "percent",
    "valid_range": f"{CONFIDENCE_RANGE[0]} {CONFIDENCE_RANGE[1]}",
}


def check_landcover_outputs(out: Path, confidence: Path | None, vector: Path | None,
                            inputs: Iterable[str | Path | None]) -> None:
    """Check the outputs of one scene before any work (the rules of :mod:`geoseg.utils.outputs`).

    Raises:
        ConfigError: two outputs with the same name.
        OutputError: wrong suffix, an existing file geoseg did not write (sidecars included), an
            output on or inside one of ``inputs``, or a folder that cannot be written.
    """
    check_not_input({"--out": out, "--confidence": confidence, "--vector": vector}, inputs)
    claim_file(out, flag="--out", suffixes=RASTER_SUFFIXES, sidecars=(aux_xml_path(out), qml_path(out)))
    if confidence is not None:
        claim_file(confidence, flag="--confidence", suffixes=RASTER_SUFFIXES, sidecars=(qml_path(confidence),))
    if vector is not None:
        claim_file(vector, flag="--vector", suffixes=(".gpkg",))
    outputs = [p.resolve() for p in (out, confidence, vector) if p is not None]
    if len(set(outputs)) != len(outputs):
        raise ConfigError("two outputs share one file name", path=out,
                          hint="give --out, --confidence and --vector different names")


def classes_from_probs(probs: np.ndarray, valid: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class codes (uint8, 0 where invalid) and the max probability (float32) of a block."""
    best = probs[0].copy()
    index = np.zeros(best.shape, dtype=np.uint8)
    for k in range(1, probs.shape[0]):
        better = probs[k] > best
        np.copyto(best, probs[k], where=better)
        index[better] = k
    out = codes[index]
    out[~valid] = 0
    return out, best


class LandCoverWriter:
    """Write stitched blocks as the land-cover COG (+ confidence COG, + class polygons).

    Args:
        out: the land-cover GeoTIFF (``.tif``); sidecars go beside it.
        grid: the scene's grid (the outputs' exact grid).
        classes: output channel i ↔ ``classes[i]`` (code, name, colour).
        tags: dataset tags (model, version, date, source scene...).
        confidence: optional confidence GeoTIFF path.
        vector: optional GeoPackage path for class polygons.
        overviews: overview resampling of the class raster (``mode`` or ``nearest``).
    """

    def __init__(
        self,
        out: str | Path,
        grid: Grid,
        classes: Sequence[ClassDef],
        *,
        tags: Mapping[str, str] | None = None,
        confidence: str | Path | None = None,
        vector: str | Path | None = None,
        overviews: OverviewResampling = "mode",
    ):
        self.out = Path(out)
        self.confidence = None if confidence is None else Path(confidence)
        self.vector = None if vector is None else Path(vector)
        self.grid, self.classes = grid, list(classes)
        self.codes = np.array([c.code for c in self.classes], dtype=np.uint8)
        self.tags = dict(tags or {})
        self.overviews = overviews
        self.counts = np.zeros(256, dtype=np.int64)
        self._class_raster: StreamingCOG | None = None
        self._conf_raster: StreamingCOG | None = None
        self._temps: list[Path] = []
        self._created: list[Path] = []  # output folders made by this writer

    # ------------------------------------------------------------------ context
    def __enter__(self) -> LandCoverWriter:
        for path in (self.out, self.confidence, self.vector):
            if path is not None:
                self._created += make_parents(path)
                clean_stale_temporaries(path)  # left by a killed run
        self._class_raster = StreamingCOG(
            self.grid, self._temp(self.out, "stream"), nodata=0, description=BAND_DESCRIPTION, tags=self.tags,
            colormap=class_colormap(self.classes), overviews=self.overviews,
        )
        if self.confidence is not None:
            self._conf_raster = StreamingCOG(
                self.grid, self._temp(self.confidence, "stream"), nodata=CONFIDENCE_NODATA,
                description="confidence", units="%", tags={**self.tags, "units": "percent (max class probability)"},
                band_tags=CONFIDENCE_BAND_TAGS, overviews="average",
            )
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        finished = False
        try:
            if exc_type is None:
                self._finish()
                finished = True
        finally:
            for raster in (self._class_raster, self._conf_raster):
                if raster is not None:
                    raster.close()
            for tmp in self._temps:
                for leftover in (tmp, Path(f"{tmp}.aux.xml")):
                    with contextlib.suppress(FileNotFoundError):
                        leftover.unlink()
            if not finished:
                remove_empty(self._created)

    def _temp(self, final: Path, tag: str) -> Path:
        tmp = temp_sibling(final, tag)
        self._temps.append(tmp)
        return tmp

    # ------------------------------------------------------------------ sink
    def __call__(self, block: StitchedBlock) -> None:
        """Write one finished block of rows."""
        assert self._class_raster is not None, "use LandCoverWriter as a context manager"
        classes, best = classes_from_probs(block.probs, block.valid, self.codes)
        self.counts += np.bincount(classes.ravel(), minlength=256)
        self._class_raster.write(block.row_off, classes)
        if self._conf_raster is not None:
            conf = np.rint(best * 100).astype(np.uint8)
            conf[~block.valid] = CONFIDENCE_NODATA
            self._conf_raster.write(block.row_off, conf)

    # ------------------------------------------------------------------ finish
    def _finish(self) -> None:
        assert self._class_raster is not None
        final_tif = self._class_raster.finish(self._temp(self.out, "cog"))
        moves = [(final_tif, self.out)]
        if self._conf_raster is not None and self.confidence is not None:
            moves.append((self._conf_raster.finish(self._temp(self.confidence, "cog")), self.confidence))
        if self.vector is not None:
            from geoseg.stitch.vector import polygonize_classes

            gpkg = self._temp(self.vector, "vec")
            polygonize_classes(final_tif, gpkg, self.classes)
            moves.append((gpkg, self.vector))
        for tmp, final in moves:
            os.replace(tmp, final)
        write_sidecars(self.out, self.classes, BAND_DESCRIPTION)
        if self.confidence is not None:
            write_confidence_style(self.confidence)
