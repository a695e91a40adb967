"""The built-in demo scene: a seeded, realistic Sentinel-2 L2A-like scene with labels."""

from geoseg.demo.classes import DEMO_CLASSES
from geoseg.demo.generator import DemoScene, generate_demo_scene

__all__ = ["DEMO_CLASSES", "DemoScene", "generate_demo_scene"]
