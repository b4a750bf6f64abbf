"""The engine that studies, ablations and verifications share: an Optuna study in an RDB storage
whose trials are MLflow child runs of one parent run, run by workers on one machine or many, with
heartbeats, a retry from the last checkpoint, and clean stops on SIGINT/SIGTERM.

A :class:`Job` says what differs (how a trial becomes a config, the objective, the parent run);
:class:`Engine` does the rest. Work is queued with Optuna's own ``enqueue_trial``: WAITING trials
(empty ones that the sampler fills for a study, fixed *cells* for an ablation), each started by
exactly one worker.
"""
from ..stopping import Interrupted, StopRequest
from ._callbacks import DivergenceGuard, PruningCallback, TrialFailure
from ._devices import default_gpus, parse_gpus
from ._engine import Engine, WorkersFailed
from ._job import CELL_ATTR, CellJob, Job, Prepared, cell, cell_key
from ._options import (GRACE_PERIOD, HEARTBEAT_INTERVAL, WORKER_MEMORY_MB, WORKERS_PER_CORE,
                       EngineOptions, check_workers)
from ._retry import Retrier
from ._storage import KIND_ATTR, default_storage_url, experimental_ok, load_existing, open_storage
from ._study import open_study, parent_run
from ._trial import (BASELINE_ATTR, FAIL_ATTR, FINGERPRINT_ATTR, PARENT_ATTR, RUN_ATTR, URI_ATTR,
                     WORKER_ATTR)

__all__ = ["BASELINE_ATTR", "CELL_ATTR", "CellJob", "DivergenceGuard", "Engine", "EngineOptions",
           "FAIL_ATTR", "FINGERPRINT_ATTR", "GRACE_PERIOD", "HEARTBEAT_INTERVAL", "Interrupted",
           "Job", "KIND_ATTR", "PARENT_ATTR", "Prepared", "PruningCallback", "RUN_ATTR", "Retrier",
           "StopRequest", "TrialFailure", "URI_ATTR", "WORKERS_PER_CORE", "WORKER_ATTR",
           "WORKER_MEMORY_MB", "WorkersFailed", "cell", "cell_key", "check_workers",
           "default_gpus", "default_storage_url", "experimental_ok", "load_existing",
           "open_storage", "open_study", "parent_run", "parse_gpus"]
