"""The worker loop: take queued trials until none is left, in this process or a worker process."""
from __future__ import annotations

import logging
import signal
import sys
import time

import optuna
import torch
from optuna.trial import TrialState

from remdinet.config import ConfigError
from remdinet.data import DataError

from ..console import configure as configure_console
from ..stopping import StopRequest
from ..tracking import Tracker, quiet_loggers
from ._job import Job
from ._options import EngineOptions
from ._retry import Retrier
from ._runner import TrialRunner
from ._storage import fail_stale, open_storage
from ._study import await_attr, open_study
from ._trial import PARENT_ATTR, claim, run_trial

_log = logging.getLogger(__name__)


def run_worker(job: Job, storage_url: str, tracking_uri: str, options: EngineOptions,
               fresh: bool, stop: StopRequest,
               index: int | None = None) -> int | None:
    """Run trials of the existing study of ``job``; return the signal that stopped the worker, or
    None.

    The worker takes the study's WAITING trials until none is left and no trial of the study is
    running anywhere (a worker that is done waits for the running ones, to retry any whose worker
    dies). ``fresh``: when nothing is queued, start a new sampled trial instead (a study run by
    timeout). ``options.timeout`` (seconds) stops taking new ones. A trial stopped by a signal is
    queued for a retry.
    """
    tracker = Tracker(tracking_uri)
    retrier = Retrier(tracker, options.grace_period)
    storage = open_storage(storage_url, options.heartbeat_interval, options.grace_period,
                           retrier.on_stale)
    study, _ = open_study(job, storage, join=True)
    parent = await_attr(study, PARENT_ATTR)
    runner = TrialRunner(job, storage, tracker, parent, options, stop, index)
    started = time.monotonic()
    waiting = False
    try:
        while not stop.requested:
            if options.timeout is not None and time.monotonic() - started >= options.timeout:
                _log.info(f"timeout ({options.timeout:g} s): no new trial is started")
                break
            fail_stale(study, options.grace_period)
            trial = claim(study, storage, runner.study_id)
            if trial is None and fresh:
                trial = study.ask()
            if trial is None:
                running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if not running:
                    break
                if not waiting:
                    _log.info(f"no trial left to start; waiting for the running trial(s) "
                              f"{', '.join(str(t.number) for t in running)} (a trial whose "
                              f"worker dies is failed after the {options.grace_period} s grace "
                              f"period and retried)")
                    waiting = True
                stop.wait(options.heartbeat_interval)
                continue
            waiting = False
            run_trial(study, storage, trial, runner)
    except KeyboardInterrupt as exc:
        if runner.interrupted is not None:
            failed = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(
                runner.study_id, runner.interrupted))
            if failed.state == TrialState.FAIL:
                retrier.retry(study, failed)
        return getattr(exc, "signum", signal.SIGINT)
    return stop.signum


def worker_main(job: Job, storage_url: str, tracking_uri: str, options: EngineOptions,
                fresh: bool, index: int, threads: int) -> int:
    """One worker process (started by :func:`._processes.run_processes`); returns its exit code:
    0, 2 (an error in the job's input), 128 + signal when stopped."""
    torch.set_num_threads(threads)
    configure_console(quiet=options.quiet, prefix=f"[worker {index}] ")
    if options.quiet_logs:
        quiet_loggers()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with StopRequest() as stop:
            signum = run_worker(job, storage_url, tracking_uri, options, fresh, stop, index)
    except (ConfigError, DataError) as exc:
        print(f"[worker {index}] error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0 if signum is None else 128 + signum
