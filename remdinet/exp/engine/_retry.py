"""Retrying, once, a trial whose worker died or was stopped by a signal."""
from __future__ import annotations

import logging

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial

from ..tracking import Tracker
from ._storage import experimental_ok
from ._trial import BASELINE_ATTR, FAIL_ATTR, RUN_ATTR, stale_reason
from ._job import CELL_ATTR

_log = logging.getLogger(__name__)

MAX_RETRY = 1
KEPT_ATTRS = (BASELINE_ATTR, CELL_ATTR)  # what a retry keeps of the failed trial's attributes


def retried_trial(trial: FrozenTrial) -> int | None:
    with experimental_ok():
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


class Retrier:
    """Retries, once, a trial whose worker died (the storage's heartbeat-stale callback) or was
    stopped by a signal, and closes the MLflow run such a worker left open.

    The retry is Optuna's (:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`): a WAITING
    trial with the same parameters (and, for a cell, the same cell) whose system attributes name
    the trial it repeats; the next free worker takes it like any queued trial and resumes from
    the failed trial's last checkpoint (:class:`._runner.TrialRunner`)."""

    def __init__(self, tracker: Tracker, grace_period: int):
        self.tracker = tracker
        self.grace_period = grace_period
        with experimental_ok():
            self._retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def on_stale(self, study: optuna.Study, trial: FrozenTrial) -> None:
        reason = stale_reason(trial, self.grace_period)
        _log.info(f"trial {trial.number} failed: {reason}")
        run_id = trial.user_attrs.get(RUN_ATTR)
        if run_id is not None:
            # a Tracker on the worker's host may have closed it already (Tracker.close_abandoned)
            if self.tracker.client.get_run(run_id).info.status == "RUNNING":
                self.tracker.set_tags(run_id, {FAIL_ATTR: reason})
                self.tracker.terminate(run_id, "KILLED")
            self.tracker.set_tags(run_id, {"optuna.state": "FAIL"})
        self.retry(study, trial)

    def retry(self, study: optuna.Study, trial: FrozenTrial) -> None:
        with experimental_ok():
            history = RetryHeartbeatStaleTrialCallback.retry_history(trial)
        if len(history) >= MAX_RETRY:
            _log.info(f"trial {trial.number} is not retried: it is already the retry of trial "
                      f"{history[0]} (at most {MAX_RETRY} retry per trial)")
            return
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k in KEPT_ATTRS}
        with experimental_ok():
            self._retry(study, trial)
        _log.info(f"trial {trial.number} queued for a retry")
