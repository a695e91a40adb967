"""Pipelines: compose the stages (tile → train → evaluate → predict → export) from one YAML file.

>>> from geoseg.pipeline import run_pipeline
>>> result = run_pipeline("pipelines/demo.yaml")          # runs/demo/<step>/...
>>> result.skipped                                         # a second run: every step up to date
['tile', 'train', 'evaluate', 'predict', 'export']

The step models (``schema``), the steps themselves (``steps``), step manifests (``state``) and
the Dask fan-out (``fanout``) are importable from their modules.
"""

from geoseg.pipeline.checks import check_pipeline
from geoseg.pipeline.runner import RunResult, StepResult, run_pipeline
from geoseg.pipeline.schema import STEP_NAMES, Pipeline, load_pipeline

__all__ = [
    "STEP_NAMES",
    "Pipeline",
    "RunResult",
    "StepResult",
    "check_pipeline",
    "load_pipeline",
    "run_pipeline",
]
