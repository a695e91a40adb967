"""What a model was trained on (:class:`TrainingDomain`) and whether a scene fits it.

Training records the domain of its CubeStore in the bundle's ``config.json`` (``domain``):
the processing level(s) of the training scenes (from the store manifest's per-scene sources),
how their DN offset was decided (the offset rule), their reflectance scale, per-channel
statistics of the training cubes over valid pixels (mean and std from the store's
``stats.json``; the 1st, 50th and 99th percentiles from a sample of the training cubes) and
the range of the cubes' valid fractions.

Before prediction, :func:`sample_scene` reads nine windows of 170 px spread over the scene (the
whole scene up to 512 x 512 px) through :func:`geoseg.features.read_features`: the features the
model will see, about 260,000 pixels, memory flat whatever the scene size (0.2-0.4 s on a full
10980 x 10980 GeoTIFF tile, about 1 s on a JPEG 2000 ``.SAFE``). :func:`check_domain` compares
them with the domain. It reports findings (:class:`Finding`), one plain sentence each:

* ``level``: the scene is Level-1C (top of atmosphere) and the model saw only Level-2A
  (surface reflectance), or the other way round;
* ``reflectance``: the sample's reflectance is far from the training data's, by any of
  - the **dark floor**: the 1st percentile of the blue band (B02) differs from the training
    data's by more than :data:`FLOOR_SHIFT` (0.04 reflectance, 400 DN). Nearly every land
    cover is dark in the blue at the surface (water, vegetation and shadow 0.00-0.04), so
    Level-2A scenes share a floor near 0.01-0.04; top-of-atmosphere (Level-1C) data carry the
    atmosphere's path reflectance (+0.05-0.10 in the blue), a DN offset that was not applied
    adds 0.1, one applied twice subtracts it. On the real samples in ../shared/data the floor
    of the snow-free L2A scenes lies within 0.023 of a demo-trained model's, that of the L1C
    scenes 0.063-0.28 above it (docs/predict.md lists the figures);
  - the **median** of a key band (B02, B03, B04, B08) outside the training 1–99 % range
    widened by :data:`RANGE_MARGIN` of its width on each side;
  - the **mean** of a key band more than :data:`Z_MAX` training standard deviations from the
    training mean (the training std is the spread of single pixels, so a scene whose average
    pixel is that far off is made of what training rarely saw; real L2A scenes lie within 1.5);
* ``offset`` / ``scale``: the scene's DN offset was guessed from the data where every training
  scene stated it, or its reflectance scale was never seen in training — reported only when
  the sample does not confirm the reflectance (it differs, or has too few valid pixels) and the
  level does not already explain it, since a right offset and scale give the training data's
  floor.

A level finding carries the sample's evidence (an L1C scene is also brighter than L2A training
data: one finding, not two), and :attr:`DomainCheck.message` puts every finding of a scene on
one line: ``predict`` warns once per scene.

Bundles written before the domain existed have no ``domain``: nothing is checked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from geoseg.config.schema import StrictModel
from geoseg.io.sensors import REFLECTANCE_SCALE, S2_BAND_NAMES

if TYPE_CHECKING:
    from rasterio.windows import Window

    from geoseg.features.recipes import Recipe
    from geoseg.io.scene import Scene

__all__ = [
    "ChannelRange",
    "DomainCheck",
    "DomainScene",
    "FLOOR_BANDS",
    "FLOOR_SHIFT",
    "Finding",
    "KEY_BANDS",
    "RANGE_MARGIN",
    "SceneSample",
    "TrainingDomain",
    "Z_MAX",
    "build_domain",
    "check_domain",
    "cube_percentiles",
    "level_of",
    "sample_scene",
    "sample_windows",
]

Level = Literal["L1C", "L2A", "unknown"]
KEY_BANDS = ("B02", "B03", "B04", "B08")  # blue, green, red, NIR: where L1C and L2A differ most (and present in
# every common recipe); the other bands are compared only when a recipe has none of these
PERCENTILES = (1.0, 50.0, 99.0)
FLOOR_BANDS = ("B02", "B01")  # the blue band whose dark floor (1st percentile) is compared: the first present
FLOOR_SHIFT = 0.04  # reflectance; see the module docstring
RANGE_MARGIN = 0.25  # a median beyond p01/p99 by a quarter of the p01-p99 width is "far outside"
Z_MAX = 3.0  # a scene whose average pixel lies 3 training standard deviations from the training mean
MIN_SAMPLE_PIXELS = 1000  # fewer valid pixels in the sample: the distribution is not compared
SAMPLE_GRID = 3  # windows per side of the scene sample (each window costs a JPEG 2000 decode per file)
SAMPLE_WINDOW = 170  # their side in pixels: 9 x 170² = 260,100 pixels
FULL_READ_PIXELS = 512 * 512  # scenes up to this size are read whole
TRAIN_SAMPLE_CUBES = 32
TRAIN_SAMPLE_PIXELS = 4096  # per cube


def level_of(text: str | None) -> Level:
    """``L1C``, ``L2A`` or ``unknown`` from any spelling (``L2A``, ``Level-2A``, ``S2MSI1C``...)."""
    t = (text or "").upper()
    if "2A" in t:
        return "L2A"
    if "1C" in t:
        return "L1C"
    return "unknown"


_LEVEL_WORDS = {"L1C": "Level-1C (top-of-atmosphere reflectance)", "L2A": "Level-2A (surface reflectance)"}


class DomainScene(StrictModel):
    """One scene of the training store, as its manifest recorded it."""

    scene_id: str
    level: Level = Field("unknown", description="processing level (unknown: not recorded or not known)")
    offset: float | None = Field(None, description="DN offset applied: reflectance = (DN + offset) / scale")
    offset_rule: str = Field("unknown", description="how the offset was decided: metadata, catalog, inferred")
    scale: float = Field(REFLECTANCE_SCALE, description="DN per unit reflectance")


class ChannelRange(StrictModel):
    """Statistics of one feature channel over the valid pixels of the training cubes."""

    name: str
    mean: float
    std: float
    p01: float | None = None
    p50: float | None = None
    p99: float | None = None


class TrainingDomain(StrictModel):
    """The ``domain`` section of a bundle's ``config.json``: what the model was trained on."""

    levels: list[Level] = Field(description="processing levels of the training scenes")
    scales: list[float] = Field(description="reflectance scales (DN per unit reflectance) of the training scenes")
    offset_rules: list[str] = Field(description="how the training scenes' DN offsets were decided")
    scenes: list[DomainScene] = Field(default_factory=list)
    split: str = Field("train", description="the store split the statistics describe")
    channels: list[ChannelRange] = Field(description="per-channel statistics of the training cubes (valid pixels)")
    pixels: int = Field(0, description="valid pixels behind mean and std")
    sample_pixels: int = Field(0, description="valid pixels behind the percentiles (a sample of the cubes)")
    valid_fraction: tuple[float, float] | None = Field(None, description="lowest and highest valid fraction of "
                                                                         "the training cubes")

    def channel(self, name: str) -> ChannelRange | None:
        """The training range of channel ``name``, or None when it was not recorded."""
        return next((c for c in self.channels if c.name == name), None)


def cube_percentiles(read_cube: Callable[[int], np.ndarray], ids: Sequence[int], mask_channels: int, *,
                     max_cubes: int = TRAIN_SAMPLE_CUBES, per_cube: int = TRAIN_SAMPLE_PIXELS,
                     seed: int = 0) -> tuple[np.ndarray | None, int]:
    """Percentiles (:data:`PERCENTILES`) of every channel over valid pixels of some cubes.

    Up to ``max_cubes`` cubes evenly spaced in ``ids`` contribute up to ``per_cube`` valid
    pixels each (a seeded draw), so the cost does not grow with the store.

    Returns:
        ``(array (3, C), pixels)``, or ``(None, 0)`` when the cubes hold no valid pixel.
    """
    from geoseg.validity import valid_mask_numpy

    ids = list(ids)
    if not ids:
        return None, 0
    chosen = sorted({ids[int(round(i))] for i in np.linspace(0, len(ids) - 1, min(len(ids), max_cubes))})
    rng = np.random.default_rng(seed)
    parts = []
    for i in chosen:
        cube = read_cube(int(i))
        valid = valid_mask_numpy(cube, mask_channels, channel_dim=0)[0]
        pixels = cube[:, valid]
        if pixels.shape[1] > per_cube:
            pixels = pixels[:, np.sort(rng.choice(pixels.shape[1], per_cube, replace=False))]
        parts.append(pixels)
    values = np.concatenate(parts, axis=1) if parts else np.empty((0, 0))
    if values.size == 0:
        return None, 0
    return np.percentile(values, PERCENTILES, axis=1), int(values.shape[1])


def _source_scene(source: Mapping[str, Any]) -> DomainScene:
    return DomainScene(scene_id=str(source.get("scene_id", "")), level=level_of(source.get("level")),
                       offset=source.get("offset"), offset_rule=str(source.get("offset_rule") or "unknown"),
                       scale=float(source.get("scale", REFLECTANCE_SCALE)))


def build_domain(manifest: Mapping[str, Any], stats: Mapping[str, Any], *, split: str = "train",
                 percentiles: np.ndarray | None = None, sample_pixels: int = 0,
                 valid_fractions: Sequence[float] = ()) -> TrainingDomain:
    """The :class:`TrainingDomain` of a CubeStore from its manifest and ``stats.json``.

    Args:
        manifest: the store's ``manifest.json`` (its ``sources`` give levels, offsets, scales;
            stores written before they recorded a level give ``unknown``).
        stats: the store's ``stats.json``: mean/std of ``split`` (of all cubes when the split
            has none).
        percentiles: ``(3, C)`` from :func:`cube_percentiles`, or None.
        sample_pixels: pixels behind ``percentiles``.
        valid_fractions: valid fraction of each training cube.
    """
    scenes = [_source_scene(s) for s in manifest.get("sources") or []]
    block = (stats.get("by_split") or {}).get(split) or {}
    source = block if block.get("count", 0) > 0 else stats
    names = list(stats.get("channel_names") or manifest.get("channel_names") or [])
    channels = []
    for c, name in enumerate(names):
        p = [None, None, None] if percentiles is None else [float(v) for v in percentiles[:, c]]
        channels.append(ChannelRange(name=name, mean=float(source["mean"][c]), std=float(source["std"][c]),
                                     p01=p[0], p50=p[1], p99=p[2]))
    fractions = [float(f) for f in valid_fractions]
    return TrainingDomain(
        levels=sorted({s.level for s in scenes}) or ["unknown"],
        scales=sorted({s.scale for s in scenes}) or [REFLECTANCE_SCALE],
        offset_rules=sorted({s.offset_rule for s in scenes}) or ["unknown"],
        scenes=scenes, split=split if source is block else "all", channels=channels,
        pixels=int(source.get("count", 0)), sample_pixels=int(sample_pixels),
        valid_fraction=(min(fractions), max(fractions)) if fractions else None,
    )


# ----------------------------------------------------------------------------------- the check
def sample_windows(height: int, width: int, grid: int = SAMPLE_GRID, size: int = SAMPLE_WINDOW) -> list[Window]:
    """The windows of a scene sample: the whole scene when small, else ``grid`` x ``grid``
    windows of ``size`` px, each centred in its cell of the scene."""
    from rasterio.windows import Window

    if height * width <= FULL_READ_PIXELS:
        return [Window(0, 0, width, height)]
    h, w = min(size, height), min(size, width)
    out = []
    for r in range(grid):
        for c in range(grid):
            row = min(max(0, int((r + 0.5) * height / grid) - h // 2), height - h)
            col = min(max(0, int((c + 0.5) * width / grid) - w // 2), width - w)
            out.append(Window(col, row, w, h))
    return list(dict.fromkeys(out))  # a narrow scene may repeat a window


@dataclass(frozen=True)
class SceneSample:
    """Valid pixels of a few windows of a scene: ``values`` ``(C, N)`` and the pixels read."""

    channel_names: tuple[str, ...]
    values: np.ndarray
    pixels: int
    windows: int
    seconds: float

    @property
    def valid_fraction(self) -> float:
        """Fraction of the pixels read that are valid."""
        return self.values.shape[1] / self.pixels if self.pixels else 0.0


def sample_scene(scene: Scene, recipe: Recipe, *, grid: int = SAMPLE_GRID, size: int = SAMPLE_WINDOW,
                 workers: int = 4) -> SceneSample:
    """Read :func:`sample_windows` of ``scene`` through the feature stack (the model's inputs).

    Memory holds the windows' valid pixels only (at most ``grid² · size²`` pixels).
    """
    from geoseg.features import read_features

    start = time.perf_counter()
    windows = sample_windows(scene.grid.height, scene.grid.width, grid, size)

    def read(w: Window) -> np.ndarray:
        features, valid = read_features(scene, w, recipe)
        return features[:, valid]

    with ThreadPoolExecutor(max(1, min(workers, len(windows))), thread_name_prefix="geoseg-domain") as pool:
        parts = list(pool.map(read, windows))
    pixels = sum(int(w.width) * int(w.height) for w in windows)
    values = np.concatenate(parts, axis=1)
    return SceneSample(tuple(recipe.channel_names), values, pixels, len(windows), time.perf_counter() - start)


@dataclass(frozen=True)
class Finding:
    """One way the scene differs from the training domain; ``message`` is one sentence."""

    kind: Literal["level", "reflectance", "scale", "offset"]
    message: str


@dataclass(frozen=True)
class DomainCheck:
    """The result of :func:`check_domain`: findings (empty: the scene fits) and the figures."""

    scene_id: str
    findings: tuple[Finding, ...]
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def messages(self) -> list[str]:
        """The findings' one-sentence messages."""
        return [f.message for f in self.findings]

    @property
    def message(self) -> str:
        """Every finding on one line (``""`` when the scene fits): ``scene: what — fix; what — fix``."""
        prefix = f"{self.scene_id}: "
        return prefix + "; ".join(m.removeprefix(prefix) for m in self.messages) if self.findings else ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: ``checked``, the findings and the figures."""
        return {"checked": True, "findings": [{"kind": f.kind, "message": f.message} for f in self.findings],
                **({"message": self.message} if self.findings else {}), **self.figures}

    def status(self) -> str:
        """One short phrase for summaries and tags."""
        if not self.findings:
            return "fits the model's training data"
        kinds = ", ".join(dict.fromkeys(f.kind for f in self.findings))
        return f"{len(self.findings)} warning(s): {kinds} differ from the model's training data"


def _key_bands(domain: TrainingDomain, names: Sequence[str]) -> list[str]:
    usable = [n for n in names if (c := domain.channel(n)) is not None and c.p01 is not None and c.std > 0]
    keys = [b for b in KEY_BANDS if b in usable]
    return keys or [n for n in usable if n in S2_BAND_NAMES]


def _band_figures(domain: TrainingDomain, sample: SceneSample, bands: Sequence[str]) -> dict[str, dict[str, float]]:
    index = {n: i for i, n in enumerate(sample.channel_names)}
    out = {}
    for band in bands:
        c = domain.channel(band)
        assert c is not None and c.p01 is not None and c.p99 is not None
        v = sample.values[index[band]].astype(np.float64)
        p01, median = (float(x) for x in np.percentile(v, [1.0, 50.0]))
        out[band] = {
            "p01": p01, "median": median, "mean": float(v.mean()), "z": float((v.mean() - c.mean) / c.std),
            "train_p01": c.p01, "train_p50": float(c.p50 if c.p50 is not None else math.nan), "train_p99": c.p99,
            "train_mean": c.mean, "train_std": c.std,
        }
    return out


def _far(band: str, f: Mapping[str, float], floor: bool) -> tuple[str, str] | None:
    """How one band's sample is far from its training distribution, and what that can mean (None: it is not)."""
    lo, hi = f["train_p01"], f["train_p99"]
    shift = f["p01"] - lo
    if floor and abs(shift) > FLOOR_SHIFT:
        look = ("the look of top-of-atmosphere (Level-1C) data, haze, snow, or a DN offset that was not applied"
                if shift > 0 else "reflectance below the training data's, e.g. a DN offset applied twice")
        return (f"its darkest {band} pixels (1st percentile {f['p01']:.3f}) are {abs(shift):.3f} "
                f"{'brighter' if shift > 0 else 'darker'} than the training data's ({lo:.3f})", look)
    margin = RANGE_MARGIN * (hi - lo)
    if not lo - margin <= f["median"] <= hi + margin:
        side = "above" if f["median"] > hi else "below"
        return f"its median {band} {f['median']:.3f} is far {side} the training 1-99 % range {lo:.3f}-{hi:.3f}", ""
    if abs(f["z"]) > Z_MAX:
        return (f"its mean {band} {f['mean']:.3f} is {abs(f['z']):.1f} training standard deviations "
                f"{'above' if f['z'] > 0 else 'below'} the training mean {f['train_mean']:.3f}"), ""
    return None


def check_domain(domain: TrainingDomain, scene: Scene, sample: SceneSample | None) -> DomainCheck:
    """Compare ``scene`` (and its :func:`sample_scene`) with the model's training ``domain``.

    Returns:
        A :class:`DomainCheck`: its findings (one sentence each, naming the scene, what differs
        and what to do) and the figures behind them (JSON-friendly, for the run summary).
    """
    sid = scene.scene_id
    findings: list[Finding] = []
    level = level_of(scene.level)
    known = [lv for lv in domain.levels if lv != "unknown"]
    wrong_level = level != "unknown" and bool(known) and level not in known
    figures: dict[str, Any] = {
        "scene_level": level, "training_levels": list(domain.levels),
        "scene_offset": scene.offset.offset, "scene_offset_rule": scene.offset.source,
        "training_offset_rules": list(domain.offset_rules),
        "scene_scale": scene.scale, "training_scales": list(domain.scales),
        "bands": None,
    }
    confirmed = False  # the sample's reflectance matches the training data's
    far: list[tuple[str, str]] = []  # (what differs, what that can mean) per band
    if sample is not None:
        figures.update(sample_windows=sample.windows, sample_pixels=sample.pixels,
                       sample_valid_pixels=int(sample.values.shape[1]),
                       sample_valid_fraction=round(sample.valid_fraction, 4),
                       sample_seconds=round(sample.seconds, 3))
        bands = [b for b in _key_bands(domain, sample.channel_names) if b in sample.channel_names]
        if sample.values.shape[1] >= MIN_SAMPLE_PIXELS and bands:
            per_band = _band_figures(domain, sample, bands)
            figures["bands"] = {b: {k: round(v, 4) for k, v in f.items()} for b, f in per_band.items()}
            floor_band = next((b for b in FLOOR_BANDS if b in per_band), None)
            far = [why for b, f in per_band.items() if (why := _far(b, f, b == floor_band)) is not None]
            if far and not wrong_level:  # a wrong level explains it: its finding quotes the evidence
                findings.append(Finding("reflectance", (
                    f"{sid}: the scene's reflectance is far from the model's training data: "
                    f"{'; '.join(f'{what}, {means}' if means else what for what, means in far[:2])} "
                    f"— check the scene's level, offset and scale (geoseg inspect), or use a model trained on "
                    f"scenes like this one")))
            confirmed = not far
        else:
            figures["note"] = (f"{sample.values.shape[1]} valid pixels in the sample (fewer than "
                               f"{MIN_SAMPLE_PIXELS}): reflectance not compared")
    if wrong_level:
        trained = " and ".join(_LEVEL_WORDS[lv] for lv in known)
        seen = f" (and its reflectance shows it: {far[0][0]})" if far else ""
        findings.insert(0, Finding("level", (
            f"{sid}: the scene is {_LEVEL_WORDS[level]} but the model was trained on {trained} scenes only{seen}, so "
            f"its map can be badly wrong (e.g. far too much water) — predict the {known[0]} product of this "
            f"acquisition instead, or use a model trained on {level} scenes")))
    # a guessed offset or another scale matters only if the reflectance does not match the training data's
    # (and the level, when it differs, explains that first)
    rules = set(domain.offset_rules)
    confirmed = confirmed or wrong_level
    if not confirmed and scene.offset.source == "inferred" and rules and not rules & {"inferred", "unknown"}:
        findings.append(Finding("offset", (
            f"{sid}: the scene's DN offset ({scene.offset.offset:+g}) was guessed from the data "
            f"({scene.offset.detail}), while every training scene's offset was stated ({', '.join(sorted(rules))}); "
            f"a wrong guess puts every reflectance off by 0.1 — state the offset in the catalog (offset: -1000 or "
            f"0) and predict with --dataset")))
    if not confirmed and scene.scale not in domain.scales:
        findings.append(Finding("scale", (
            f"{sid}: the scene stores reflectance x {scene.scale:g} but the model's training scenes stored "
            f"reflectance x {', '.join(f'{s:g}' for s in domain.scales)} — check that --scale (catalog scale:) "
            f"states how this file stores reflectance (geoseg inspect shows its values)")))
    return DomainCheck(sid, tuple(findings), figures)
