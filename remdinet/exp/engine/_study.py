"""Creating or loading a job's Optuna study and its one MLflow parent run, race-free."""
from __future__ import annotations

import json
import time
from typing import Any

import optuna
from mlflow.exceptions import MlflowException
from optuna.exceptions import DuplicatedStudyError

from remdinet.config import ConfigError

from ..stores import mask_url, sqlite_path
from ..tracking import Tracker
from ._job import Job
from ._storage import KIND_ATTR, experimental_ok, open_storage
from ._trial import FINGERPRINT_ATTR, PARENT_ATTR, URI_ATTR

CREATOR_WAIT = 60.0  # seconds a process waits for a new study's creator to store its attributes
SHOWN_DIFFERENCES = 8


def await_attr(study: optuna.Study, key: str) -> Any:
    """A study attribute that the study's creator stores right after creating it; a process that
    loaded the study in between waits for it."""
    deadline = time.monotonic() + CREATOR_WAIT
    while True:
        value = study.user_attrs.get(key)
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise ConfigError(
                f"study {study.study_name!r} has no {key!r} attribute {CREATOR_WAIT:.0f} s after it "
                f"was found: the process that created it stopped before storing it; delete the "
                f"study (optuna delete-study --study-name {study.study_name} --storage URL) and "
                f"start again")
        time.sleep(0.5)


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: stored -> current`` for every key whose value differs (missing = ``(unset)``)."""
    out = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key, "(unset)"), current.get(key, "(unset)")
        if a != b:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out


def _check_fingerprint(study: optuna.Study, job: Job) -> None:
    stored = json.loads(await_attr(study, FINGERPRINT_ATTR))
    diff = differences(stored, job.fingerprint())
    if diff:
        shown = "; ".join(diff[:SHOWN_DIFFERENCES])
        more = f" (and {len(diff) - SHOWN_DIFFERENCES} more)" if len(diff) > SHOWN_DIFFERENCES else ""
        raise ConfigError(f"{job.kind} {job.name!r} already exists in the storage with a different "
                          f"definition: {shown}{more}; resume it unchanged or give it a new name")


def _not_there(job: Job) -> ConfigError:
    return ConfigError(f"--join: there is no {job.kind} {job.name!r} in the storage yet; start it "
                       f"without --join")


def check_joinable(job: Job, storage_url: str) -> None:
    """Refuse ``--join`` to a study that does not exist before anything is made for it (a
    storage file, an output folder, an MLflow store)."""
    db = sqlite_path(storage_url)
    if db is not None and not db.exists():
        raise _not_there(job)
    if job.name not in optuna.get_all_study_names(open_storage(storage_url, writes=False)):
        raise _not_there(job)


def open_study(job: Job, storage: optuna.storages.RDBStorage, join: bool = False
               ) -> tuple[optuna.Study, bool]:
    """The study of ``job`` and whether this call created it; a stored study with another
    fingerprint is refused, naming what differs. Of several processes starting the same new
    study at once exactly one creates it (the storage's unique study name decides) and stores
    the fingerprint; the others load it. ``join``: the study must exist already."""
    created = False
    if join:
        if job.name not in optuna.get_all_study_names(storage):
            raise _not_there(job)
        study = optuna.load_study(study_name=job.name, storage=storage, pruner=job.make_pruner())
    else:
        try:
            study = optuna.create_study(storage=storage, study_name=job.name,
                                        directions=list(job.directions), pruner=job.make_pruner())
            created = True
        except DuplicatedStudyError:
            study = optuna.load_study(study_name=job.name, storage=storage,
                                      pruner=job.make_pruner())
    if created:
        with experimental_ok():
            study.set_metric_names(list(job.metrics))
        study.set_user_attr(KIND_ATTR, job.kind)
        study.set_user_attr(FINGERPRINT_ATTR, json.dumps(job.fingerprint(), sort_keys=True))
    else:
        _check_fingerprint(study, job)
    study.sampler = job.make_sampler(len(study.trials))
    return study, created


def parent_run(study: optuna.Study, job: Job, tracker: Tracker, created: bool, study_id: int
               ) -> str:
    """The job's one MLflow parent run: made by the process that created the study, read from
    the study by every other (each trial's run hangs under it, whichever worker ran it)."""
    if not created:
        parent = await_attr(study, PARENT_ATTR)
        try:
            tracker.client.get_run(parent)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise ConfigError(
                f"{job.kind} {job.name!r}: its MLflow parent run {parent} is not in "
                f"{mask_url(tracker.uri)}; use the tracking URI it was started with "
                f"({study.user_attrs.get(URI_ATTR)})") from None
        tracker.client.update_run(parent, status="RUNNING")
        return parent
    name, tags, params = job.parent_run()
    parent = tracker.create_run(tracker.experiment_id(job.experiment), name,
                                {**tags, "optuna.study_id": study_id})
    tracker.log_params(parent, params)
    # only to tell a user which store to use: never the password
    study.set_user_attr(URI_ATTR, mask_url(tracker.uri))
    study.set_user_attr(PARENT_ATTR, parent)
    return parent
