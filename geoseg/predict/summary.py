"""What a prediction run reports: pixels, valid fraction, class areas, seconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ClassArea", "PredictionSummary"]


@dataclass(frozen=True)
class ClassArea:
    """Pixels and area of one class in the output."""

    code: int
    name: str
    pixels: int
    hectares: float


@dataclass(frozen=True)
class PredictionSummary:
    """The result of :func:`geoseg.predict.predict_scene`.

    Attributes:
        scene_id, source: the input scene.
        output: the land-cover GeoTIFF; ``confidence``/``vector`` when requested.
        width, height, crs: the output grid.
        pixels, valid_pixels: grid pixels and pixels with valid input (classified).
        classes: per-class pixels and hectares, in class-map order (absent classes have 0).
        windows, windows_run: windows laid out / sent to the model (all-invalid ones skip it).
        seconds: wall-clock time of the whole run; ``model_seconds``: time inside the model.
        device: where the model ran; ``engine``: what ran it (``torch``, ``torch-bf16`` or ``onnxruntime``) and
            ``engine_reason`` why (``--engine auto`` decides per run).
        domain: the comparison of the scene with the model's training data
            (:func:`geoseg.predict.predictor.check_scene_domain`): ``findings`` (kind, message)
            and the figures behind them; None when the model records no training domain.
    """

    scene_id: str
    source: str
    output: Path
    width: int
    height: int
    crs: str
    pixels: int
    valid_pixels: int
    classes: tuple[ClassArea, ...]
    windows: int
    windows_run: int
    seconds: float
    model_seconds: float
    device: str
    engine: str = "torch"
    engine_reason: str = ""
    confidence: Path | None = None
    vector: Path | None = None
    extra: dict = field(default_factory=dict)
    domain: dict | None = None  # the training-domain check (DomainCheck.to_dict()); None: not checked

    @property
    def valid_fraction(self) -> float:
        """Fraction of the scene's pixels that are valid."""
        return self.valid_pixels / self.pixels if self.pixels else 0.0

    @property
    def hectares(self) -> dict[str, float]:
        """Class name → area in hectares."""
        return {c.name: c.hectares for c in self.classes}

    def lines(self) -> list[str]:
        """Human-readable summary lines (printed by ``geoseg predict``)."""
        out = [
            f"{self.scene_id}: wrote {self.output}",
            f"  grid      {self.width} x {self.height} px, {self.crs}",
            f"  pixels    {self.pixels:,} ({self.valid_fraction:.1%} valid, {self.pixels - self.valid_pixels:,} nodata)",
            f"  windows   {self.windows} ({self.windows_run} through the model on {self.device}, {self.engine})",
            f"  time      {self.seconds:.1f} s ({self.model_seconds:.1f} s in the model, "
            f"{self.pixels / 1e6 / max(self.seconds, 1e-9):.2f} Mpx/s)",
        ]
        if self.domain is not None and not self.domain.get("findings"):
            out.append("  domain    fits the model's training data")
        domain = self.domain or {}
        if domain.get("findings"):  # one line per scene (summaries written before: one per finding)
            found = [domain["message"]] if "message" in domain else [f["message"] for f in domain["findings"]]
            out.extend(f"  warning   {m}" for m in found)
        if self.extra.get("dates"):
            out.append(f"  dates     {', '.join(d or 'padding' for d in self.extra['dates'])}")
        if self.confidence:
            out.append(f"  confidence {self.confidence}")
        if self.vector:
            out.append(f"  polygons  {self.vector}")
        width = max((len(c.name) for c in self.classes), default=5)
        out.append("  class areas:")
        for c in self.classes:
            share = c.pixels / self.valid_pixels if self.valid_pixels else 0.0
            out.append(f"    {c.code:>3} {c.name:<{width}} {c.hectares:>12,.2f} ha  {share:6.1%}")
        return out

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return {
            "written_by": "geoseg", "scene_id": self.scene_id, "source": self.source, "output": str(self.output),
            "confidence": None if self.confidence is None else str(self.confidence),
            "vector": None if self.vector is None else str(self.vector),
            "width": self.width, "height": self.height, "crs": self.crs, "pixels": self.pixels,
            "valid_pixels": self.valid_pixels, "valid_fraction": self.valid_fraction,
            "classes": [c.__dict__ for c in self.classes], "windows": self.windows,
            "windows_run": self.windows_run, "seconds": self.seconds, "model_seconds": self.model_seconds,
            "device": self.device, "engine": self.engine, "engine_reason": self.engine_reason, **self.extra, "domain": self.domain,
        }
