"""Phenology of the demo season: what each field looks like on a given day of the year.

A field's 10 m spectrum is a linear mix of endmembers — green canopy, dry matter (ripening
crop, stubble, hay, dry grass), soil (of the field's brightness and that day's moisture),
broadleaf canopy with and without leaves, conifer canopy, water, built-up — whose shares
follow the field's class through the season:

- **cropland**: one of four calendars (winter cereal 45 %, winter rapeseed 15 %, maize 25 %,
  sugar beet 15 %), each field shifted by a few days and of its own vigour: green-up, ripening
  (dry), harvest to stubble, tillage to bare soil, then a catch crop or the next winter crop.
  Spring crops follow a winter cover crop on half the fields.
- **grassland**: a flat curve. Each field keeps one cover all season (lush, sparse or dry: a
  level some crop field shows at some date), with a gentle summer bulge and, on 40 % of the
  fields, one cut that dips the green cover for a few weeks. On any single date a grassland
  field therefore looks like some crop field; only the season tells the steady curve from the
  green-up, ripening and harvest of a crop.
- **bare soil**: fallow: a steady bare, stubbly or sparse cover (again a look some crop field has
  at some date) with a short weedy flush in early summer.
- **forest**: a deciduous share per stand (leaves out in early May, fall in mid-October) and
  conifers; **water** and **built-up** do not change.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from geoseg.demo.classes import DEMO_SPECTRA

__all__ = ["ENDMEMBERS", "Season", "GREEN", "DRY", "SOIL", "LEAFLESS", "BROADLEAF", "CONIFER"]

# Endmember spectra in L2A band order; columns of a field's abundance vector.
GREEN, DRY, SOIL, BROADLEAF, LEAFLESS, CONIFER, WATER, BUILT = range(8)
ENDMEMBERS = np.array([
    [0.035, 0.030, 0.070, 0.030, 0.110, 0.330, 0.420, 0.460, 0.470, 0.150, 0.200, 0.090],  # green canopy
    [0.070, 0.080, 0.120, 0.160, 0.200, 0.240, 0.270, 0.290, 0.310, 0.100, 0.400, 0.300],  # dry matter
    DEMO_SPECTRA[6],  # soil
    DEMO_SPECTRA[2],  # broadleaf canopy in leaf
    [0.040, 0.040, 0.060, 0.070, 0.100, 0.140, 0.160, 0.170, 0.180, 0.070, 0.220, 0.150],  # leafless stand
    [0.022, 0.020, 0.035, 0.020, 0.060, 0.160, 0.190, 0.200, 0.210, 0.070, 0.100, 0.045],  # conifer
    DEMO_SPECTRA[1],  # water
    DEMO_SPECTRA[5],  # built-up
], dtype=np.float32)

# share, green-up, ripening, harvest (day of year)
_CROPS = np.array([
    (0.20, 90, 160, 185),   # winter barley
    (0.25, 95, 175, 210),   # winter wheat
    (0.12, 85, 165, 195),   # winter rapeseed
    (0.08, 125, 190, 222),  # spring barley
    (0.05, 150, 215, 245),  # potato
    (0.20, 172, 250, 275),  # maize
    (0.10, 145, 270, 290),  # sugar beet
])
_SPRING = 3  # calendars from here on are sown in spring
_FIRST, _LAST = 103, 283  # the season the demo covers (13 April .. 10 October)


def _rise(day: float | np.ndarray, at: np.ndarray | float, width: float) -> np.ndarray:
    return expit((day - np.asarray(at)) / width)


class _Crops:
    """Per-field crop calendars."""

    def __init__(self, rng: np.random.Generator, k: int):
        self.kind = rng.choice(len(_CROPS), size=k, p=_CROPS[:, 0])
        shift = rng.normal(0, 10, size=k)
        self.up, self.ripe, self.harvest = (_CROPS[self.kind, 1:] + shift[:, None]).T
        self.tillage = self.harvest + rng.uniform(5, 35, size=k)
        self.vigour = rng.uniform(0.75, 0.95, size=k)
        cover = rng.uniform(0.2, 0.6, size=k) * (rng.random(k) < 0.7)
        self.cover = np.where(self.kind >= _SPRING, cover, 0.0)
        # after tillage: a catch crop, or the next winter crop that only just emerges by October
        self.after = np.where(rng.random(k) < 0.5, rng.uniform(0.3, 0.8, size=k), rng.uniform(0.05, 0.2, size=k))

    def state(self, day: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Green and dry cover fractions."""
        green = self.vigour * _rise(day, self.up, 9) * (1 - _rise(day, self.ripe, 7))
        ripe = self.vigour * _rise(day, self.ripe, 7) * (1 - _rise(day, self.harvest, 2))
        stubble = 0.5 * _rise(day, self.harvest, 2) * (1 - _rise(day, self.tillage, 3))
        cover_crop = self.cover * (1 - _rise(day, 115, 4))
        regrowth = self.after * _rise(day, self.tillage + 25, 8)
        return green + cover_crop + regrowth, 0.9 * ripe + stubble


class _Grass:
    """Per-field grassland: one steady cover, one optional cut."""

    def __init__(self, rng: np.random.Generator, k: int):
        crops = _Crops(rng, k)  # each field steadily shows what some crop shows at some date
        self.green, self.dry = crops.state(rng.uniform(_FIRST, _LAST, size=k))
        floor = rng.uniform(0.1, 0.35, size=k)  # never bare: at least a sparse sward
        self.green = self.green + np.clip(floor - self.green - self.dry, 0, None)
        self.cut = np.where(rng.random(k) < 0.0, rng.uniform(130, 230, size=k), np.inf)

    def state(self, day: float) -> tuple[np.ndarray, np.ndarray]:
        bulge = 0.9 + 0.1 * np.exp(-0.5 * ((day - 160) / 50) ** 2)
        since = np.where(day >= self.cut, day - self.cut, np.inf)
        return self.green * bulge * (1 - 0.5 * np.exp(-since / 14)), self.dry + 0.2 * np.exp(-since / 7)


class _Fallow:
    """Per-field bare soil: the steady bare, stubbly or sparse look of some crop at some date."""

    def __init__(self, rng: np.random.Generator, k: int, tries: int = 8):
        crops = _Crops(rng, k * tries)
        green, dry = (a.reshape(tries, k) for a in crops.state(rng.uniform(_FIRST, _LAST, size=k * tries)))
        first = np.argmax(green < 0.25, axis=0)  # the first low-cover candidate (0 if none: rare)
        self.base_green, self.dry = np.minimum(green[first, np.arange(k)], 0.25), dry[first, np.arange(k)]
        self.weeds = rng.uniform(0, 0.15, size=k)  # a short weedy flush in early summer
        self.peak = rng.uniform(140, 200, size=k)

    def state(self, day: float) -> tuple[np.ndarray, np.ndarray]:
        return self.base_green + self.weeds * np.exp(-0.5 * ((day - self.peak) / 30) ** 2), self.dry


class Season:
    """Seeded per-field parameters of every class; :meth:`abundances` for a day of the year."""

    def __init__(self, fields: int, rng: np.random.Generator):
        self.crops, self.grass, self.fallow = _Crops(rng, fields), _Grass(rng, fields), _Fallow(rng, fields)
        self.deciduous = rng.uniform(0, 1, size=fields)
        self.brightness = rng.uniform(0.75, 1.25, size=fields)
        self.fields = fields

    def abundances(self, day: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(7, fields, 8)`` endmember shares per class code (row 0 unused) and soil brightness per field.

        ``rng`` draws that day's soil moisture; the soil share is a fraction, to be multiplied
        by the brightness (after any per-pixel change of the green share).
        """
        table = np.zeros((7, self.fields, len(ENDMEMBERS)), dtype=np.float32)
        for code, model in ((3, self.crops), (4, self.grass), (6, self.fallow)):
            green, dry = model.state(day)
            green = np.clip(green, 0, 1)
            dry = np.clip(dry, 0, 1 - green)
            table[code, :, GREEN], table[code, :, DRY], table[code, :, SOIL] = green, dry, 1 - green - dry
        leaf = float(_rise(day, 125, 6) * (1 - _rise(day, 288, 7)))
        table[2, :, BROADLEAF] = self.deciduous * leaf
        table[2, :, LEAFLESS] = self.deciduous * (1 - leaf)
        table[2, :, CONIFER] = 1 - self.deciduous
        table[1, :, WATER] = 1
        table[5, :, BUILT] = 1
        moisture = rng.uniform(0.93, 1.05, size=self.fields)
        return table, (self.brightness * moisture).astype(np.float32)
