"""The Optuna storage every study, ablation and verification lives in."""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial

from remdinet.config import ConfigError

from ..stores import OPTUNA, check_store, mask_url, sqlite_path
from ..tracking import SQLITE_LOCK_WAIT, STORE_DIR
from ._trial import FAIL_ATTR, stale_reason

KIND_ATTR = "kind"  # study user attribute: "study", "ablation" or "verification"


def default_storage_url(tracking_uri: str | None = None) -> str:
    """``optuna.db`` beside the MLflow SQLite store of ``tracking_uri`` (so the two stores of one
    project stay together: ``./mlruns/`` by default), else ``./mlruns/optuna.db``."""
    db = sqlite_path(tracking_uri) if tracking_uri else None
    folder = db.parent if db is not None else Path.cwd().resolve() / STORE_DIR
    return f"sqlite:///{folder / 'optuna.db'}"


@contextmanager
def experimental_ok() -> Iterator[None]:
    # Optuna marks heartbeats and the retry callback experimental; they are used as documented
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None,
                 writes: bool = True) -> optuna.storages.RDBStorage:
    """The Optuna RDB storage at ``url``, checked first (:func:`..stores.check_store`: a SQLite
    store must be writable unless ``writes`` is False, any other must accept a connection, and
    neither may hold MLflow's tables).

    ``heartbeat_interval``: every running trial records a heartbeat this often (seconds); a trial
    silent for more than ``grace_period`` seconds is failed, and ``on_stale`` called with it, the
    next time any worker looks (:func:`.fail_stale`).

    SQLite: a worker waits up to 60 s for the database lock, and every transaction takes the
    write lock when it begins (``BEGIN IMMEDIATE``). Python's sqlite3 driver otherwise runs a
    transaction's reads before its ``BEGIN``, so two workers can both see one WAITING trial and
    both start it; with the lock taken up front, Optuna's compare-and-set on trial states holds.
    """
    check_store(url, OPTUNA, writes)
    kwargs: dict[str, Any] = {}
    sqlite = url.startswith("sqlite:///")
    if sqlite:
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": SQLITE_LOCK_WAIT,
                                                    "isolation_level": None}}
    with experimental_ok():
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_interval,
                                             grace_period=grace_period,
                                             heartbeat_stale_trial_callback=on_stale, **kwargs)
    if sqlite:
        sqlalchemy.event.listen(storage.engine, "begin",
                                lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return storage


def fail_stale(study: optuna.Study, grace_period: int) -> None:
    """Fail the study's trials whose heartbeat stopped (calls the storage's stale callback).

    Each first gets its ``fail_reason`` (:func:`._trial.stale_reason`), so that ``study show``
    gives it: Optuna fails the trial before it calls the callback, and a finished trial's
    attributes can no longer be set."""
    storage = study._storage
    with experimental_ok():
        # the trials Optuna's fail_stale_trials is about to fail (its BaseHeartbeat interface)
        for trial_id in storage._get_stale_trial_ids(study._study_id):
            reason = stale_reason(storage.get_trial(trial_id), grace_period)
            try:
                storage.set_trial_user_attr(trial_id, FAIL_ATTR, reason)
            except UpdateFinishedTrialError:
                pass  # another worker failed it first, with the same reason
        optuna.storages.fail_stale_trials(study)


def load_existing(name: str, storage_url: str, kind: str | None = None) -> optuna.Study:
    """The stored study ``name`` (of ``kind`` when given); an unknown name raises listing the
    ones there are."""
    storage = open_storage(storage_url, writes=False)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    names = [s.study_name for s in summaries
             if kind is None or s.user_attrs.get(KIND_ATTR, "study") == kind]
    if name not in names:
        what = kind or "study"
        raise ConfigError(f"no {what} {name!r} in {mask_url(storage_url)}; {what} names there: "
                          f"{', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)
