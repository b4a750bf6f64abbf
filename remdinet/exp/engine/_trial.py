"""Taking one queued trial and running it: Optuna's WAITING -> RUNNING compare-and-set, the
trial's heartbeat, and telling the study how it ended.

Why not ``study.optimize``: when a worker loses the race for the last WAITING trial, ``optimize``
(``Study.ask``) creates a fresh trial instead, and an ablation has no fresh trials, only cells.
The claim below is the loop of ``Study.ask`` without that fallback; exactly one worker wins each
WAITING trial because the storage's state transition is atomic (a row lock on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite, :func:`._storage.open_storage`).
"""
from __future__ import annotations

import logging
import gc
import threading
from typing import Any, Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from ._callbacks import TrialFailure

_log = logging.getLogger(__name__)

# study user attributes
PARENT_ATTR = "mlflow_parent_run_id"
URI_ATTR = "mlflow_tracking_uri"
FINGERPRINT_ATTR = "spec_fingerprint"
# trial user attributes
RUN_ATTR = "mlflow_run_id"
FAIL_ATTR = "fail_reason"
WORKER_ATTR = "worker"
BASELINE_ATTR = "baseline"
FAIL_REASON_LIMIT = 5000


def stale_reason(trial: optuna.trial.FrozenTrial, grace_period: int) -> str:
    """Why a trial whose heartbeat stopped is failed: its ``fail_reason``."""
    return (f"no heartbeat from its worker {trial.user_attrs.get(WORKER_ATTR, '(unknown)')} for "
            f"more than {grace_period} s: the worker was killed or lost")


def claim(study: optuna.Study, storage: optuna.storages.RDBStorage, study_id: int
          ) -> optuna.Trial | None:
    """A WAITING trial of ``study`` now RUNNING for this worker, or None when none is left."""
    for waiting in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, waiting.number)
        try:
            won = storage.set_trial_state_values(trial_id, TrialState.RUNNING)
        except UpdateFinishedTrialError:
            continue  # another worker claimed and finished it since the listing
        if won:
            return optuna.Trial(study, trial_id)
    return None


class Heartbeat:
    """Records the running trial's heartbeat every ``storage.get_heartbeat_interval()`` seconds
    in a background thread while the block runs (nothing when heartbeats are off)."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_id: int):
        self.storage = storage
        self.trial_id = trial_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.storage.record_heartbeat(self.trial_id)

    def __enter__(self) -> "Heartbeat":
        interval = self.storage.get_heartbeat_interval()
        if interval is not None:
            self.storage.record_heartbeat(self.trial_id)
            self._thread = threading.Thread(target=self._beat, args=(interval,), daemon=True,
                                            name=f"heartbeat-{self.trial_id}")
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def run_trial(study: optuna.Study, storage: optuna.storages.RDBStorage, trial: optuna.Trial,
              objective: Callable[[optuna.Trial], Any]) -> None:
    """Run ``objective`` on a claimed trial and tell the study its end: COMPLETE with the
    values, PRUNED, or FAIL (a :class:`TrialFailure` is logged and the worker goes on; any other
    exception, a stop signal included, fails the trial and propagates)."""
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), trial.number)
    try:
        with Heartbeat(storage, trial_id):
            values = objective(trial)
    except optuna.TrialPruned as exc:
        study.tell(trial, state=TrialState.PRUNED)
        _log.info(f"trial {trial.number} pruned: {exc}")
    except TrialFailure as exc:
        study.tell(trial, state=TrialState.FAIL)
        _log.info(f"trial {trial.number} failed: {exc}")
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)
        raise
    else:
        study.tell(trial, values)
    finally:
        gc.collect()  # a trial's model and data are garbage now; free them before the next one
