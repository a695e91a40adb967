"""``geoseg run PIPELINE.yaml``: every step of a pipeline, resumable, into one run directory."""

from __future__ import annotations

from pathlib import Path

import click

from geoseg.cli.options import AliasOption
from geoseg.cli.types import SchedulerAddress

__all__ = ["run_cmd"]

_STEPS = ("tile", "train", "evaluate", "predict", "export", "all")


@click.command("run")
@click.argument("pipeline", type=click.Path(path_type=Path))
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Where the steps write (default: runs/<pipeline name> in the current folder).")
@click.option("--force", "force", multiple=True, type=click.Choice(_STEPS),
              help="Rerun this step from scratch, and every step after it that reads its outputs (repeatable).")
@click.option("--scheduler", type=SchedulerAddress(), default=None,
              help="Dask scheduler address (tcp://HOST:PORT) for tiling and the per-scene prediction fan-out.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@click.option("--print-config", "--print_config", "print_config", cls=AliasOption, is_flag=True,
              help="Print the resolved pipeline (every default filled) as YAML and exit; it runs the same.")
def run_cmd(pipeline: Path, run_dir: Path | None, force: tuple[str, ...], scheduler: str | None,
            no_progress: bool, print_config: bool) -> None:
    """Run PIPELINE (tile → train → evaluate → predict → export) into runs/<name>/<step>/.

    Each step writes its resolved config.yaml and a manifest.json. A step whose inputs,
    parameters and geoseg version are unchanged is skipped; an interrupted run resumes
    where it stopped. The end of the run says where the outputs are and how to open the
    land-cover map in QGIS. Everything printed also goes to runs/<name>/run.log.

    \b
    Examples:
      geoseg run pipelines/demo.yaml
      geoseg run pipelines/demo.yaml --force train        # retrain; re-evaluate, re-predict
      geoseg run pipelines/rsprunetpp.yaml --scheduler tcp://10.0.0.5:8786
      geoseg run pipelines/demo.yaml --print-config > my_pipeline.yaml
    """
    if print_config:
        import yaml

        from geoseg.pipeline.schema import load_pipeline

        click.echo(yaml.safe_dump(load_pipeline(pipeline).resolved(scheduler), sort_keys=False), nl=False)
        return
    from geoseg.pipeline import run_pipeline

    run_pipeline(pipeline, run_dir=run_dir, force=force, scheduler=scheduler, progress=not no_progress,
                 echo=click.echo)
