"""``remdi-exp train --resume RUN_ID|PATH``: continue a stopped run in the same MLflow run.

A RUN_ID's checkpoint is ``<its tag run_dir>/checkpoints/last.pth``; a PATH is a checkpoint file
whose run folder names its run (``mlflow_run.json``, :class:`.runs.RunFolder`). The run must have
ended KILLED (a stop by signal, or a killed process closed by the next :class:`.tracking.Tracker`)
or FAILED: a FINISHED run has nothing left to train and a RUNNING one is being trained.

The config is the checkpoint's: only runtime keys (device, loader workers, output folder, compile)
may be changed with ``--set`` / ``--device``; any other key is refused before the run is reopened.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from remdinet.checkpoint import load_checkpoint
from remdinet.config import ConfigError
from remdinet.resolve import resolve
from remdinet.train import RUNTIME_KEYS

from .owner import OWNER_TAG
from .runs import RUN_RECORD, TRAIN_EXPERIMENT, RunOutcome, continued_run
from .tracking import Tracker

RUN_ID = re.compile(r"[0-9a-f]{32}")  # MLflow's run ids: uuid4 hex
RESUMABLE = ("KILLED", "FAILED")


def recorded_run(checkpoint: Path) -> str:
    """The MLflow run id recorded in the run folder (``<folder>/checkpoints/<checkpoint>``)."""
    record = checkpoint.resolve().parent.parent / RUN_RECORD
    if not record.is_file():
        raise ConfigError(f"--resume {checkpoint}: {record} is missing, so the MLflow run of this "
                          f"checkpoint is unknown (`remdi-exp train` writes it when a run starts)")
    try:
        return str(json.loads(record.read_text(encoding="utf-8"))["run_id"])
    except (ValueError, KeyError, TypeError):  # not JSON, or JSON without a run id
        raise ConfigError(f"--resume {checkpoint}: {record} is not the run record that `remdi-exp "
                          f"train` writes ({{\"run_id\": ...}})") from None


def stopped_run(tracker: Tracker, run_id: str) -> Run:
    """The ``train`` run ``run_id``, checked to be one that can be continued."""
    try:
        run = tracker.client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ConfigError(f"--resume {run_id}: no such MLflow run in the tracking store") from None
    experiment = tracker.client.get_experiment(run.info.experiment_id).name
    if experiment != TRAIN_EXPERIMENT:
        raise ConfigError(f"--resume {run_id}: a run of experiment {experiment!r}; `train "
                          f"--resume` continues runs of {TRAIN_EXPERIMENT!r} (studies and "
                          f"ablations resume their own trials)")
    status = run.info.status
    if status == "RUNNING":
        raise ConfigError(f"--resume {run_id}: the run is RUNNING, in process "
                          f"{run.data.tags.get(OWNER_TAG, '(unknown)')}; stop it first")
    if status not in RESUMABLE:
        raise ConfigError(f"--resume {run_id}: the run is {status}; only a "
                          f"{' or '.join(RESUMABLE)} run can be continued")
    return run


def resume_point(tracker: Tracker, target: str) -> tuple[str, Path]:
    """``(run id, checkpoint)`` of ``--resume target``: a checkpoint file or a run id."""
    path = Path(target)
    if path.is_dir():
        raise ConfigError(f"--resume {target}: a folder, not a checkpoint file; give its "
                          f"checkpoints/last.pth or the run id")
    if path.is_file():
        return stopped_run(tracker, recorded_run(path)).info.run_id, path
    if not RUN_ID.fullmatch(target):
        raise ConfigError(f"--resume {target}: no such checkpoint file, and not an MLflow run id")
    run = stopped_run(tracker, target)
    folder = run.data.tags.get("run_dir")
    if folder is None:
        raise ConfigError(f"--resume {target}: the run stopped before training started (no "
                          f"run_dir tag), so there is no checkpoint to continue from")
    checkpoint = Path(folder) / "checkpoints" / "last.pth"
    if not checkpoint.is_file():
        raise ConfigError(f"--resume {target}: its checkpoint {checkpoint} is not on this machine")
    return target, checkpoint


def resume_train(tracker: Tracker, target: str, runtime: dict[str, Any], quiet: bool = False
                 ) -> RunOutcome:
    """Continue the run of ``--resume target`` with the checkpoint's config + ``runtime``
    overrides, in the same MLflow run (:func:`.runs.continued_run`)."""
    # refused here, not by the trainer, so that the stopped run is not reopened only to fail
    other = sorted(set(runtime) - RUNTIME_KEYS)
    if other:
        raise ConfigError(f"--resume continues with the checkpoint's config; only "
                          f"{', '.join(sorted(RUNTIME_KEYS))} may be set, not {', '.join(other)}")
    run_id, checkpoint = resume_point(tracker, target)
    cfg = resolve({**load_checkpoint(checkpoint)["config"], **runtime})
    return continued_run(tracker, run_id, cfg, checkpoint, quiet=quiet)
