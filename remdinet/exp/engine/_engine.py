"""One invocation's hold on a job: its study and parent run, its workers, how the parent ends."""
from __future__ import annotations

import logging
import sys
from typing import Any

import optuna
from optuna.trial import TrialState

from remdinet.data import build_data
from remdinet.data.feeding import available_cpus
from remdinet.resolve import resolve

from ..names import check_name
from ..runs import check_run_inputs
from ..stopping import Interrupted, StopRequest, signal_name
from ..stores import check_distinct
from ..tracking import Tracker
from ._devices import worker_envs
from ._job import Job
from ._options import EngineOptions
from ._processes import WorkerExit, run_processes
from ._retry import Retrier
from ._storage import fail_stale, open_storage
from ._study import check_joinable, open_study, parent_run
from ._trial import FAIL_ATTR, FAIL_REASON_LIMIT
from ._worker import run_worker, worker_main

_log = logging.getLogger(__name__)


class WorkersFailed(RuntimeError):
    """Worker processes ended abnormally (killed, or an error)."""

    def __init__(self, exits: list[WorkerExit]):
        super().__init__("; ".join(e.describe() for e in exits))
        self.exits = exits


def check_data(base: dict[str, Any]) -> None:
    """Decode the job's data set once (without keeping it) before any worker starts: a data
    problem stops the job here, naming the files, instead of failing in every trial. This also
    writes the embedded set before several workers could race to write it."""
    build_data(resolve({**base, "data.cache_decoded": False}))


class Engine:
    """Opens (creating or resuming) the study of ``job`` and its MLflow parent run.

    Within ``with``: :meth:`enqueue` cells or trials, :meth:`work` to run them with the
    workers of ``options``, then :meth:`finish`. An exception out of the block ends the parent
    run FAILED (KILLED for an interrupt)."""

    def __init__(self, job: Job, storage_url: str, tracking_uri: str, options: EngineOptions):
        # what would fail every trial alike, or break a store, is refused before anything exists
        check_name(job.name, f"{job.kind} name")
        check_name(job.experiment, "MLflow experiment name")
        check_distinct(storage_url, tracking_uri)
        if options.join:
            check_joinable(job, storage_url)
        check_run_inputs(resolve(job.base))
        check_data(job.base)
        self.job = job
        self.storage_url = storage_url
        self.tracking_uri = tracking_uri
        self.options = options
        self.tracker = Tracker(tracking_uri)
        self.storage = open_storage(storage_url, options.heartbeat_interval, options.grace_period,
                                    Retrier(self.tracker, options.grace_period).on_stale)
        self.study, self.created = open_study(job, self.storage, join=options.join)
        self.study_id = self.storage.get_study_id_from_name(job.name)
        self.parent = parent_run(self.study, job, self.tracker, self.created, self.study_id)
        self.signum: int | None = None
        self.failed: list[WorkerExit] = []

    def __enter__(self) -> "Engine":
        try:
            self._reconcile()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is None:
            return
        if isinstance(exc, KeyboardInterrupt):
            self.tracker.terminate(self.parent, "KILLED")
            return
        self.tracker.set_tags(self.parent, {
            FAIL_ATTR: f"{type(exc).__name__}: {exc}"[:FAIL_REASON_LIMIT]})
        self.tracker.terminate(self.parent, "FAILED")

    def _reconcile(self) -> None:
        """Close what dead workers left open: trials silent past the grace period are failed (and
        retried), and MLflow runs still RUNNING whose trial has finished are closed KILLED."""
        fail_stale(self.study, self.options.grace_period)
        states = {t.number: t.state for t in self.study.get_trials(deepcopy=False)}
        exp_id = self.tracker.experiment_id(self.job.experiment)
        runs = self.tracker.client.search_runs(
            [exp_id], f"attributes.status = 'RUNNING' and tags.`mlflow.parentRunId` = "
                      f"'{self.parent}'")
        for run in runs:
            number = int(run.data.tags["optuna.trial_number"])
            state = states.get(number)
            if state is None or not state.is_finished():
                continue
            reason = (f"its trial {number} is {state.name}, but the run was left RUNNING: its "
                      f"worker ended without closing it")
            self.tracker.set_tags(run.info.run_id, {FAIL_ATTR: reason, "optuna.state": state.name})
            self.tracker.terminate(run.info.run_id, "KILLED")
            _log.info(f"closed MLflow run {run.info.run_id} KILLED: {reason}")

    def trials(self, states: tuple[TrialState, ...] | None = None) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states)

    def pending(self) -> int:
        return len(self.trials((TrialState.WAITING,)))

    def enqueue(self, params: dict[str, Any] | None = None,
                user_attrs: dict[str, Any] | None = None) -> None:
        self.study.enqueue_trial(params or {}, user_attrs=user_attrs)

    def work(self, fresh: bool = False) -> None:
        """Run the queued trials (``fresh``: and sampled ones until the timeout) with the workers
        of the options: this process alone (1 worker, no GPU pinning) or worker processes. A
        worker left without a trial waits for the running ones, to retry any whose worker dies."""
        if self.signum is not None:
            return
        workers = self.options.workers
        if workers == 1 and not self.options.gpus:
            with StopRequest() as stop:
                self.signum = run_worker(self.job, self.storage_url, self.tracking_uri,
                                         self.options, fresh, stop)
            return
        if workers > 1 and self.storage_url.startswith("sqlite"):
            _log.info("note: SQLite serves the workers of one machine; to run on several machines "
                      "use PostgreSQL (--storage postgresql://...)")
        each = self.options.threads or max(1, available_cpus() // workers)
        envs = worker_envs(workers, self.options.gpus)
        where = (f" on GPU(s) {','.join(map(str, self.options.gpus))}" if self.options.gpus
                 else "")
        _log.info(f"starting {workers} worker processes{where}, {each} torch thread(s) each")
        exits, signum = run_processes(worker_main, [
            {"job": self.job, "storage_url": self.storage_url, "tracking_uri": self.tracking_uri,
             "options": self.options, "fresh": fresh, "index": i, "threads": each}
            for i in range(workers)], envs)
        for e in exits:
            _log.info(e.describe())
        self.signum = signum
        stopped = None if signum is None else 128 + signum
        self.failed += [e for e in exits if not e.ok and e.returncode != stopped]

    def finish(self) -> None:
        """End the parent run (KILLED when stopped; FINISHED when nothing is left; else it stays
        RUNNING for the workers still at it) and raise :class:`Interrupted` or
        :class:`WorkersFailed` when that is how the work ended."""
        if self.signum is not None:
            self.tracker.terminate(self.parent, "KILLED")
            raise Interrupted(self.signum, f"{self.job.kind} {self.job.name!r} stopped by "
                                           f"{signal_name(self.signum)}; a trial it interrupted is "
                                           f"queued for a retry that resumes from its last "
                                           f"checkpoint (the same command with --join, or "
                                           f"without, runs it)")
        active = self.trials((TrialState.RUNNING, TrialState.WAITING))
        if active:
            _log.info(f"{len(active)} trial(s) still running or waiting: the parent run stays "
                      f"RUNNING (--join takes the waiting ones)")
        else:
            self.tracker.terminate(self.parent, "FINISHED")
        if self.failed:
            raise WorkersFailed(self.failed)
