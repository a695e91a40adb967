"""Run a geoseg pipeline with its tiling and prediction on a Dask cluster of SLURM jobs (dask-jobqueue).

dask-jobqueue starts the Dask scheduler inside this process and submits the workers as
ordinary SLURM batch jobs (``sbatch``); ``geoseg run --scheduler`` logic then sends every
tiling task and every scene's prediction to those workers. Training runs in this process,
with the trainer's Lightning strategy (devices / num_nodes / strategy in the pipeline YAML):
submit this script itself on a GPU node so that training gets the node's GPUs::

    sbatch --gres=gpu:4 --cpus-per-task=16 --time=24:00:00 \\
        --wrap "python pipelines/slurm/dask_jobqueue_cluster.py pipelines/rsprunetpp.yaml \\
                --queue cpu --jobs 16 --cores 8 --memory 32GB --walltime 04:00:00"

The run directory and the scenes must be on a file system every node sees. Check the job
script dask-jobqueue would submit, without submitting anything::

    python pipelines/slurm/dask_jobqueue_cluster.py pipelines/demo.yaml --print-job-script

Needs ``pip install dask-jobqueue`` (docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pipeline", type=Path, help="pipeline YAML, e.g. pipelines/rsprunetpp.yaml")
    p.add_argument("--run-dir", type=Path, default=None, help="run directory (shared file system)")
    p.add_argument("--force", action="append", default=[], help="steps to rerun (repeatable), as geoseg run --force")
    p.add_argument("--queue", default=None, help="SLURM partition of the worker jobs (sbatch -p)")
    p.add_argument("--account", default=None, help="SLURM account (sbatch -A)")
    p.add_argument("--jobs", type=int, default=4, help="worker jobs to submit")
    p.add_argument("--cores", type=int, default=8, help="cores per worker job")
    p.add_argument("--processes", type=int, default=None,
                   help="Dask worker processes per job (default: one per core: tiling is one task per core)")
    p.add_argument("--memory", default="32GB", help="memory per worker job")
    p.add_argument("--walltime", default="02:00:00", help="time limit of a worker job")
    p.add_argument("--interface", default=None, help="network interface the workers reach the scheduler on (e.g. ib0)")
    p.add_argument("--local-directory", default=None, help="node-local scratch for worker spill files (e.g. $TMPDIR)")
    p.add_argument("--gpus-per-job", type=int, default=0, help="GPUs per worker job (prediction runs on them)")
    p.add_argument("--job-directive", action="append", default=[], help="extra #SBATCH directive (repeatable)")
    p.add_argument("--print-job-script", action="store_true", help="print the worker job script and exit")
    return p.parse_args(argv)


def make_cluster(args: argparse.Namespace) -> Any:
    """The ``SLURMCluster``: one Dask worker process per core, single-threaded (numba/GDAL own threads)."""
    from dask_jobqueue import SLURMCluster

    directives = list(args.job_directive)
    if args.gpus_per_job:
        directives.append(f"--gres=gpu:{args.gpus_per_job}")
    return SLURMCluster(
        queue=args.queue,
        account=args.account,
        cores=args.cores,
        processes=args.processes or args.cores,
        memory=args.memory,
        walltime=args.walltime,
        interface=args.interface,
        local_directory=args.local_directory,
        job_extra_directives=directives,
        python=sys.executable,  # the workers run this same environment (shared file system)
        job_name="geoseg-dask",
        scheduler_options={"dashboard_address": ":0"},
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with make_cluster(args) as cluster:
        if args.print_job_script:
            print(cluster.job_script())
            return 0
        from geoseg.pipeline import run_pipeline

        cluster.scale(jobs=args.jobs)
        print(f"Dask scheduler {cluster.scheduler_address} (dashboard {cluster.dashboard_link}); "
              f"{args.jobs} worker job(s) submitted", flush=True)
        run_pipeline(args.pipeline, run_dir=args.run_dir, force=args.force, scheduler=cluster.scheduler_address)
    return 0


if __name__ == "__main__":
    sys.exit(main())
