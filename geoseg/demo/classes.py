"""The demo scene's land-cover classes and their L2A reflectance spectra."""

from __future__ import annotations

import numpy as np

__all__ = ["DEMO_CLASSES", "DEMO_SPECTRA", "L2A_BANDS"]

L2A_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")

# code, name, colour (the catalog's demo dataset repeats these)
DEMO_CLASSES: tuple[tuple[int, str, str], ...] = (
    (1, "water", "#1f78b4"),
    (2, "forest", "#1b7837"),
    (3, "cropland", "#f1c232"),
    (4, "grassland", "#a6d96a"),
    (5, "built-up", "#d7301f"),
    (6, "bare soil", "#c2a27d"),
)

# Mean surface reflectance per class in L2A band order (typical values from the literature).
DEMO_SPECTRA: dict[int, np.ndarray] = {
    1: np.array([0.060, 0.052, 0.046, 0.030, 0.026, 0.020, 0.018, 0.015, 0.013, 0.006, 0.008, 0.005]),
    2: np.array([0.028, 0.024, 0.046, 0.024, 0.075, 0.230, 0.285, 0.300, 0.315, 0.100, 0.150, 0.068]),
    3: np.array([0.045, 0.045, 0.085, 0.055, 0.130, 0.300, 0.360, 0.395, 0.410, 0.130, 0.245, 0.130]),
    4: np.array([0.040, 0.040, 0.070, 0.060, 0.105, 0.190, 0.225, 0.255, 0.265, 0.095, 0.265, 0.160]),
    5: np.array([0.100, 0.105, 0.115, 0.125, 0.135, 0.145, 0.150, 0.160, 0.160, 0.060, 0.205, 0.185]),
    6: np.array([0.085, 0.095, 0.130, 0.170, 0.200, 0.220, 0.232, 0.245, 0.258, 0.090, 0.330, 0.275]),
}
CLOUD_SPECTRUM = np.array([0.52, 0.53, 0.52, 0.51, 0.52, 0.52, 0.52, 0.53, 0.52, 0.20, 0.42, 0.32])
