"""The UNet 3+ parameter table in docs/models.md matches the models (slow: builds big backbones)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from geoseg.models import create_model

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"
ROW = re.compile(r"^\| `(?P<enc>[\w]+)` \| ~(?P<seed>\d+)M \| (?P<enc_m>[\d.]+)M \| (?P<tot_m>[\d.]+)M \|$")


def _rows() -> list[dict[str, str]]:
    rows = [m.groupdict() for line in DOC.read_text().splitlines() if (m := ROW.match(line))]
    assert len(rows) == 10, "the UNet 3+ backbone table is missing from docs/models.md"
    return rows


def test_docs_table_lists_the_usual_backbones() -> None:
    encoders = [r["enc"] for r in _rows()]
    assert encoders == ["convnext_tiny", "convnext_small", "convnext_base", "hrnet_w18", "hrnet_w32",
                        "hrnet_w48", "efficientnet_b0", "efficientnet_b3", "resnet34", "resnet50"]


@pytest.mark.parametrize("row", _rows(), ids=lambda r: r["enc"])
def test_unet3plus_parameter_counts(row: dict[str, str]) -> None:
    model = create_model("unet3plus", in_channels=3, num_classes=3, encoder=row["enc"])
    enc = sum(p.numel() for p in model.encoder.parameters()) / 1e6
    total = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(enc, 1) == float(row["enc_m"])
    assert round(total, 1) == float(row["tot_m"])
