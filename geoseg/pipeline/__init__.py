"""Pipelines: compose the stages (tile → train → evaluate → predict → export) from one YAML file.

>>> from geoseg.pipeline import run_pipeline
>>> result = run_pipeline("pipelines/demo.yaml")          # runs/demo/<step>/...
>>> result.skipped                                         # a second run: every step up to date
['tile', 'train', 'evaluate', 'predict', 'export']
"""

from geoseg.pipeline.checks import check_encoder, check_pipeline
from geoseg.pipeline.fanout import predict_jobs
from geoseg.pipeline.runner import RunResult, StepResult, expand_force, run_pipeline
from geoseg.pipeline.schema import (
    DEPENDS,
    STEP_NAMES,
    EvaluateStep,
    ExportStep,
    Pipeline,
    PredictStep,
    StepName,
    Steps,
    TileStep,
    TrainStep,
    default_catalog,
    load_pipeline,
)
from geoseg.pipeline.state import read_manifest, step_key
from geoseg.pipeline.steps import STEPS, StepContext, StepOutcome, bundle_dir

__all__ = [
    "DEPENDS",
    "STEPS",
    "STEP_NAMES",
    "EvaluateStep",
    "ExportStep",
    "Pipeline",
    "PredictStep",
    "RunResult",
    "StepContext",
    "StepName",
    "StepOutcome",
    "StepResult",
    "Steps",
    "TileStep",
    "TrainStep",
    "bundle_dir",
    "check_encoder",
    "check_pipeline",
    "default_catalog",
    "expand_force",
    "load_pipeline",
    "predict_jobs",
    "read_manifest",
    "run_pipeline",
    "step_key",
]
