"""Fixtures for the model tests (``slow`` tests run only with ``-m slow``, see pyproject)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
