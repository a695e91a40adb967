"""The built-in demo data: a seeded, realistic Sentinel-2 L2A-like scene with labels, or a season of them."""

from geoseg.demo.classes import DEMO_CLASSES
from geoseg.demo.generator import DemoScene, generate_demo_scene
from geoseg.demo.series import DemoSeries, generate_demo_series, season_dates

__all__ = ["DEMO_CLASSES", "DemoScene", "DemoSeries", "generate_demo_scene", "generate_demo_series", "season_dates"]
