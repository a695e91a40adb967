"""Prediction over many scenes: in this process, or one task per scene on a Dask cluster.

With a scheduler address each scene becomes one ``distributed`` task running
:func:`geoseg.predict.predict_scene` on a worker (which loads the bundle from the shared
file system and uses its own device: a GPU worker predicts on its GPU). Without one, the
scenes run one after the other here, the model loaded once. The cluster connection is the
tiler's (``geoseg.tiling.tiler``): one place for cluster set-up. Either way every map is written
atomically by the predictor, and ``on_done`` is called as each scene finishes, so an
interrupted run keeps its finished scenes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from geoseg.errors import ConfigError
from geoseg.predict.options import PredictOptions
from geoseg.utils.progress import track_progress

__all__ = ["predict_jobs", "predict_one", "check_scheduler"]

log = logging.getLogger(__name__)


def check_scheduler(address: str, timeout: float = 10.0) -> None:
    """Fail fast (one line) when a ``tcp://HOST:PORT`` scheduler does not accept connections.

    Other protocols (``tls://``, ``ucx://``...) are left to the Dask client to check.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme != "tcp":
        return
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ConfigError(f"{address!r} is not a Dask scheduler address", hint="use tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        raise ConfigError(f"cannot reach the Dask scheduler at {address} ({err.strerror or err})",
                          hint="check the address (tcp://HOST:PORT) and that the scheduler is running") from None


def predict_one(scene: Any, bundle: str, out: str, confidence: str | None, vector: str | None,
                options: PredictOptions) -> Any:
    """One scene on a worker (a module-level function, so workers can import it)."""
    from geoseg.predict import predict_scene

    return predict_scene(scene, bundle, out, options, confidence=confidence, vector=vector, progress=False)


def predict_jobs(jobs: Sequence[Any], bundle: Path, options: PredictOptions, on_done: Callable[[Any, Any], None],
                 *, scheduler: str | None = None, progress: bool = True) -> None:
    """Predict every job (``scene``, ``out``, ``confidence``, ``vector``) with the bundle at ``bundle``.

    Args:
        jobs: what to predict and where to write it.
        bundle: the model bundle directory (visible to every worker).
        options: the prediction options (``progress`` is this function's).
        on_done: called with ``(job, PredictionSummary)`` as each scene finishes.
        scheduler: Dask scheduler address; None predicts here, one scene after the other.
        progress: progress bars (per window here, per scene on a cluster).
    """
    if not jobs:
        return
    if scheduler is None:
        from geoseg.predict import load_model_bundle, predict_scene

        model = load_model_bundle(bundle)
        for job in jobs:
            summary = predict_scene(job.scene, model, job.out, options, confidence=job.confidence,
                                    vector=job.vector, progress=progress)
            on_done(job, summary)
        return
    from distributed import as_completed

    # the tiler's cluster connection (one-line error when unreachable; distributed kept quiet)
    from geoseg.tiling.tiler import _client, _quiet_distributed

    tag = uuid.uuid4().hex[:8]
    with _quiet_distributed(), _client(None, scheduler, None) as client:
        futures = {
            client.submit(predict_one, job.scene, str(bundle), str(job.out),
                          None if job.confidence is None else str(job.confidence),
                          None if job.vector is None else str(job.vector), options,
                          key=f"geoseg-predict-{tag}-{job.scene.scene_id}", pure=False): job
            for job in jobs
        }
        log.info("predicting %d scene(s) on %s", len(futures), scheduler)
        with track_progress(len(futures), "predicting", "scene", enabled=progress) as bar:
            try:
                for future in as_completed(futures):
                    on_done(futures[future], future.result())
                    bar.update()
            except BaseException:
                client.cancel(list(futures))
                raise
