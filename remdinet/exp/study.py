"""Optuna studies over the config; every trial is an MLflow child run of one parent run per study.

Storage: an Optuna RDB storage (default: the SQLite file ``./mlruns/optuna.db``), or any SQLAlchemy
URL; PostgreSQL (``postgresql://user@host/db``) is the one to use when workers run on more than one
machine. Running the same study name again resumes it (the objective, space and base config must be
unchanged: their fingerprint is stored with the study) and adds ``n_trials`` trials.

Several processes, on one machine or many, can run one study: :func:`run_study` with ``workers``
starts worker processes here, and the same call elsewhere joins. Everything a worker needs is in
the storage: user attributes ``mlflow_parent_run_id`` (the parent run, created once by the process
that created the study), ``mlflow_tracking_uri`` and ``spec_fingerprint``; the queue of trials
still to start (:class:`.workers.TrialQueue`); each trial's ``mlflow_run_id``, ``worker``
(``host:pid``) and, for a failed trial, ``fail_reason``. Each trial's run carries the tags
``optuna.study_name``, ``optuna.study_id``, ``optuna.trial_number``, ``optuna.trial_id``,
``optuna.state`` (COMPLETE / PRUNED / FAIL), ``worker``, and for a retry ``optuna.retry_of`` and
``resumed_from``.

Run states: COMPLETE and PRUNED trials end FINISHED (a pruned run did what it was asked: report
its curve until stopped), FAIL ends FAILED with ``fail_reason``; a trial stopped by a signal, or
whose worker died, ends KILLED. A trial that raises, diverges or has a non-finite objective fails
without stopping the study (:class:`TrialRunner`). Fault tolerance: running trials send heartbeats;
a trial silent for the grace period (its worker was SIGKILLed, or its machine lost) is failed by
the next worker that looks, its run closed KILLED, and it is retried once, resuming from its last
checkpoint (:class:`Retrier`); SIGINT/SIGTERM stop a worker at the end of the current epoch
(:mod:`.workers`).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import time
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import matplotlib

matplotlib.use("Agg")  # optuna.visualization.matplotlib draws through pyplot; files only

import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
import sqlalchemy  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from optuna.exceptions import DuplicatedStudyError  # noqa: E402
from optuna.storages import RetryHeartbeatStaleTrialCallback  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from remdinet.config import ConfigError, dump_toml, resolve  # noqa: E402
from remdinet.data import DataError, build_data  # noqa: E402
from remdinet.train import Callback  # noqa: E402

from .doctor import summary_tags, tracked_doctor  # noqa: E402
from .report import to_text  # noqa: E402
from .runs import train_in_run  # noqa: E402
from .studyspec import StudySpec, StudySpecError  # noqa: E402
from .tracking import SQLITE_LOCK_WAIT, STORE_DIR, Tracker, quiet_loggers  # noqa: E402
from .workers import (QUEUE_SUFFIX, Interrupted, StopAtEpochEnd, StopRequest,  # noqa: E402
                      TrialQueue, WorkerExit, run_processes, signal_name, worker_label)

PARENT_ATTR = "mlflow_parent_run_id"
URI_ATTR = "mlflow_tracking_uri"
FINGERPRINT_ATTR = "spec_fingerprint"
RUN_ATTR = "mlflow_run_id"
FAIL_ATTR = "fail_reason"
WORKER_ATTR = "worker"
BASELINE_ATTR = "baseline"
PRUNE_METRIC = "val_psnr"
HEARTBEAT_INTERVAL = 30  # seconds between a running trial's heartbeats
GRACE_PERIOD = 120  # seconds without a heartbeat before a running trial is failed and retried
MAX_RETRY = 1
CREATOR_WAIT = 60.0  # seconds a process waits for a new study's creator to store its attributes
FAIL_REASON_LIMIT = 5000


class TrialFailure(RuntimeError):
    """A trial that cannot yield a value (invalid sampled config, divergence, non-finite
    objective, an error while training); the study goes on."""


def default_storage_url(base: str | Path | None = None) -> str:
    return f"sqlite:///{Path(base or Path.cwd()).resolve() / STORE_DIR / 'optuna.db'}"


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None
                 ) -> optuna.storages.RDBStorage:
    """The Optuna RDB storage at ``url``.

    ``heartbeat_interval``: every running trial records a heartbeat this often (seconds); a trial
    silent for more than ``grace_period`` seconds is failed, and ``on_stale`` called with it, the
    next time any worker of the study starts a trial or checks (:func:`run_worker`).

    SQLite: a worker waits up to 60 s for the database lock, and every transaction takes the
    write lock when it begins (``BEGIN IMMEDIATE``). Python's sqlite3 driver otherwise runs a
    transaction's reads before its ``BEGIN``, so two workers can both see one WAITING trial and
    both start it; with the lock taken up front, Optuna's compare-and-set on trial states holds.
    """
    kwargs: dict[str, Any] = {}
    sqlite = url.startswith("sqlite:///")
    if sqlite:
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": SQLITE_LOCK_WAIT,
                                                    "isolation_level": None}}
    with _experimental_ok():
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_interval,
                                             grace_period=grace_period,
                                             heartbeat_stale_trial_callback=on_stale, **kwargs)
    if sqlite:
        sqlalchemy.event.listen(storage.engine, "begin",
                                lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return storage


@contextmanager
def _experimental_ok() -> Iterator[None]:
    # Optuna marks heartbeats and the retry callback experimental; they are used as documented
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


class PruningCallback(Callback):
    """Reports validation PSNR per validation epoch; raises TrialPruned when the pruner says so.
    A run resumed from a checkpoint first reports the validation epochs it restored."""

    def __init__(self, trial: optuna.Trial, metric: str = PRUNE_METRIC):
        self.trial = trial
        self.metric = metric

    def on_train_start(self, trainer: Any) -> None:
        for metrics in trainer.history:
            if self.metric in metrics:
                self.trial.report(float(metrics[self.metric]), step=int(metrics["epoch"]))

    def on_epoch_end(self, trainer: Any, epoch: int, stage: int, metrics: dict[str, float]) -> None:
        if self.metric not in metrics:
            return
        value = float(metrics[self.metric])
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}: {self.metric} = {value:.3f}")


class DivergenceGuard(Callback):
    """Fails the trial at the first epoch whose training loss or validation metrics are not finite.

    The trainer skips (and counts) the batches whose loss is not finite; a non-finite epoch loss
    means no batch was left, and a non-finite validation metric makes the objective meaningless,
    so further epochs would only waste the worker's time."""

    KEYS = ("train_loss", "val_psnr", "val_ssim", "val_ms_ssim")

    def on_epoch_end(self, trainer: Any, epoch: int, stage: int, metrics: dict[str, float]) -> None:
        bad = {k: metrics[k] for k in self.KEYS if k in metrics and not math.isfinite(metrics[k])}
        if bad:
            values = ", ".join(f"{k} = {v}" for k, v in bad.items())
            raise TrialFailure(f"diverged at epoch {epoch}: {values} "
                               f"({int(metrics['skipped_batches'])} training batch(es) of the epoch "
                               f"skipped for a non-finite loss)")


class ResumedHistory(Callback):
    """Logs the epochs a resumed run restored from its checkpoint, so that the run of a retried
    trial holds the whole learning curve."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker = tracker
        self.run_id = run_id

    def on_train_start(self, trainer: Any) -> None:
        for metrics in trainer.history:
            self.tracker.log_metrics(self.run_id, metrics, step=int(metrics["epoch"]))


@dataclass
class StudyOutcome:
    name: str
    parent_run_id: str
    trials: pd.DataFrame
    best: list[FrozenTrial]
    best_config: str | None
    importances: dict[str, dict[str, float]]


@dataclass(frozen=True)
class WorkerOptions:
    """How every worker of one ``study run`` trains its trials."""
    heartbeat_interval: int = HEARTBEAT_INTERVAL
    grace_period: int = GRACE_PERIOD
    keep_checkpoints: bool = False
    quiet: bool = False  # the trainer's progress output
    doctor: bool = False


class WorkersFailed(RuntimeError):
    """Worker processes of a ``study run`` ended abnormally (killed, or an error)."""

    def __init__(self, exits: list[WorkerExit]):
        super().__init__("; ".join(e.describe() for e in exits))
        self.exits = exits


def _await_attr(study: optuna.Study, key: str, spec: StudySpec) -> Any:
    """A study attribute that the study's creator stores right after creating it; a process that
    loaded the study in between waits for it."""
    deadline = time.monotonic() + CREATOR_WAIT
    while True:
        value = study.user_attrs.get(key)
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise StudySpecError(
                f"study {spec.name!r} has no {key!r} attribute {CREATOR_WAIT:.0f} s after it was "
                f"found: the process that created it stopped before storing it; delete the study "
                f"(optuna delete-study --study-name {spec.name} --storage URL) and start again")
        time.sleep(0.5)


def open_study(spec: StudySpec, storage: optuna.storages.RDBStorage, join: bool = False
               ) -> tuple[optuna.Study, bool]:
    """The study of ``spec`` and whether this call created it; a stored study with another
    fingerprint is refused. Of several processes starting the same new study at once exactly one
    creates it (the storage's unique study name decides) and stores the fingerprint; the others
    load it. ``join``: the study must exist already."""
    created = False
    if join:
        if spec.name not in _study_names(storage):
            raise StudySpecError(f"--join: there is no study {spec.name!r} in the storage yet; "
                                 f"start it with `remdi-exp study run` without --join")
        study = optuna.load_study(study_name=spec.name, storage=storage, pruner=spec.make_pruner())
    else:
        try:
            study = optuna.create_study(storage=storage, study_name=spec.name,
                                        directions=list(spec.directions), pruner=spec.make_pruner())
            created = True
        except DuplicatedStudyError:
            study = optuna.load_study(study_name=spec.name, storage=storage,
                                      pruner=spec.make_pruner())
    if created:
        study.set_user_attr(FINGERPRINT_ATTR, spec.fingerprint())
    elif _await_attr(study, FINGERPRINT_ATTR, spec) != spec.fingerprint():
        raise StudySpecError(f"study {spec.name!r} already exists in the storage with a different "
                             f"objective, search space or base config; resume it unchanged or use "
                             f"a new name ([study] name)")
    study.sampler = spec.make_sampler(len(study.trials))
    return study, created


def _parent_run(study: optuna.Study, spec: StudySpec, tracker: Tracker, exp_id: str,
                study_id: int, created: bool) -> str:
    """The study's one MLflow parent run: made by the process that created the study, read from
    the study by every other (each trial's run hangs under it, whichever worker ran it)."""
    if not created:
        parent = _await_attr(study, PARENT_ATTR, spec)
        try:
            tracker.client.get_run(parent)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise StudySpecError(
                f"study {spec.name!r}: its MLflow parent run {parent} is not in {tracker.uri}; "
                f"use the tracking URI it was started with ({study.user_attrs.get(URI_ATTR)})"
            ) from None
        tracker.client.update_run(parent, status="RUNNING")
        return parent
    parent = tracker.create_run(exp_id, f"study {spec.name}",
                                {"kind": "study", "optuna.study_name": spec.name,
                                 "optuna.study_id": study_id, "spec": str(spec.path)})
    tracker.log_params(parent, {
        **spec.base, "study.metrics": list(spec.metrics), "study.directions": list(spec.directions),
        "study.sampler": spec.sampler, "study.pruner": spec.pruner, "study.seed": spec.seed,
        **{f"space.{k}": json.dumps(p.describe()) for k, p in spec.space.items()}})
    study.set_user_attr(URI_ATTR, tracker.uri)
    study.set_user_attr(PARENT_ATTR, parent)
    return parent


class Retrier:
    """Retries, once, a trial whose worker died (the storage's heartbeat-stale callback) or was
    stopped by a signal, and closes the MLflow run such a worker left open.

    The retry is Optuna's (:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`): a WAITING
    trial with the same parameters whose system attributes name the trial it repeats. It also gets
    an entry in the study's queue (:attr:`queue`, None when the study runs by timeout), so a retry
    does not take the place of one of the trials asked for. The retry resumes from the failed
    trial's last checkpoint (:class:`TrialRunner`)."""

    def __init__(self, tracker: Tracker, grace_period: int, log: Callable[[str], None]):
        self.tracker = tracker
        self.grace_period = grace_period
        self.log = log
        self.queue: TrialQueue | None = None
        with _experimental_ok():
            self._retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def on_stale(self, study: optuna.Study, trial: FrozenTrial) -> None:
        reason = (f"no heartbeat from its worker {trial.user_attrs.get(WORKER_ATTR, '(unknown)')} "
                  f"for more than {self.grace_period} s: the worker was killed or lost")
        self.log(f"trial {trial.number} failed: {reason}")
        run_id = trial.user_attrs.get(RUN_ATTR)
        if run_id is not None and self.tracker.client.get_run(run_id).info.status == "RUNNING":
            self.tracker.set_tags(run_id, {FAIL_ATTR: reason, "optuna.state": "FAIL"})
            self.tracker.terminate(run_id, "KILLED")
        self.retry(study, trial)

    def retry(self, study: optuna.Study, trial: FrozenTrial) -> None:
        with _experimental_ok():
            history = RetryHeartbeatStaleTrialCallback.retry_history(trial)
        if len(history) >= MAX_RETRY:
            self.log(f"trial {trial.number} is not retried: it is already the retry of trial "
                     f"{history[0]} (at most {MAX_RETRY} retry per trial)")
            return
        # the retry is a trial of its own: of the failed trial's attributes only "baseline" stays
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k == BASELINE_ATTR}
        with _experimental_ok():
            self._retry(study, trial)
        if self.queue is not None:
            self.queue.add(1, f"retry of trial {trial.number}")
        self.log(f"trial {trial.number} queued for a retry")


class TrialRunner:
    """The objective of one worker: one trial = one MLflow child run of the study's parent run.

    A trial's files are in ``<training.output_dir>/studies/<study>/trial_<N>/`` (checkpoints in
    ``checkpoints/``, ``last.pth`` rewritten every epoch). A retry of trial N uses trial N's folder
    and resumes from its ``last.pth`` when that file is on this machine (tag ``resumed_from``: the
    file, or why training starts over). Checkpoints are deleted when the trial ends, unless
    ``keep_checkpoints`` or the trial was stopped by a signal (its retry needs them).

    Failures: a trial that raises, diverges (:class:`DivergenceGuard`) or has a non-finite
    objective is FAIL with the reason in the trial's user attribute ``fail_reason`` and the run's
    tag ``fail_reason`` (the run ends FAILED; unexpected errors also leave ``traceback.txt``), and
    the study goes on. A :class:`DataError` or :class:`StudySpecError` would fail every trial
    alike: it is recorded the same way and stops the worker.
    """

    def __init__(self, spec: StudySpec, storage: optuna.storages.RDBStorage, tracker: Tracker,
                 exp_id: str, parent: str, options: WorkerOptions, stop: StopRequest,
                 log: Callable[[str], None]):
        self.spec = spec
        self.storage = storage
        self.study_id = storage.get_study_id_from_name(spec.name)
        self.tracker = tracker
        self.exp_id = exp_id
        self.parent = parent
        self.options = options
        self.stop = stop
        self.log = log
        self.worker = worker_label()
        self.run_root = Path(resolve(spec.base).training.output_dir) / "studies" / spec.name
        self.interrupted: int | None = None  # number of the trial a signal stopped

    def _resume_point(self, folder: Path, retry_of: int | None) -> tuple[Path | None, str]:
        if retry_of is None:
            return None, "none (not a retry)"
        last = folder / "checkpoints" / "last.pth"
        if last.is_file():
            return last, str(last)
        return None, (f"none: trial {retry_of} left no checkpoint at {last} on this machine, so "
                      f"training starts over")

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)
        with _experimental_ok():
            retry_of = RetryHeartbeatStaleTrialCallback.retried_trial_number(
                self.storage.get_trial(trial_id))
        # Seeded per trial number, so that workers never share a random stream (see make_sampler).
        trial.study.sampler = self.spec.make_sampler(trial.number)
        params = {key: p.suggest(trial) for key, p in self.spec.space.items()}
        folder = self.run_root / f"trial_{trial.number if retry_of is None else retry_of}"
        resume, resumed_from = self._resume_point(folder, retry_of)
        tags = {"optuna.study_name": self.spec.name, "optuna.study_id": self.study_id,
                "optuna.trial_number": trial.number, "optuna.trial_id": trial_id,
                "optuna.state": "RUNNING", "worker": self.worker,
                "baseline": str(bool(trial.user_attrs.get(BASELINE_ATTR))).lower()}
        if retry_of is not None:
            tags.update({"optuna.retry_of": retry_of, "resumed_from": resumed_from})
            self.log(f"trial {trial.number} retries trial {retry_of}; resumes from {resumed_from}")
        run_id = self.tracker.create_run(self.exp_id, f"trial {trial.number}", tags,
                                         parent_run_id=self.parent)
        trial.set_user_attr(RUN_ATTR, run_id)
        trial.set_user_attr(WORKER_ATTR, self.worker)
        state, pruned, keep = "FAIL", None, self.options.keep_checkpoints
        extra = [StopAtEpochEnd(self.stop), ResumedHistory(self.tracker, run_id)]
        try:
            with self.tracker.terminating(run_id):
                try:
                    values = _train_trial(self.spec, params, trial, self.tracker, run_id, folder,
                                          self.options.quiet, self.options.doctor, resume, extra)
                    state = "COMPLETE"
                except optuna.TrialPruned as exc:
                    state, pruned = "PRUNED", exc
                finally:
                    self.tracker.set_tags(run_id, {"optuna.state": state})
        except KeyboardInterrupt as exc:
            keep = True
            self.interrupted = trial.number
            reason = f"interrupted: {exc or 'KeyboardInterrupt'}"
            trial.set_user_attr(FAIL_ATTR, reason)
            self.tracker.set_tags(run_id, {FAIL_ATTR: reason})
            raise
        except Exception as exc:
            # the same text as the run's fail_reason tag (Tracker.terminating)
            reason = f"{type(exc).__name__}: {exc}"[:FAIL_REASON_LIMIT]
            trial.set_user_attr(FAIL_ATTR, reason)
            if isinstance(exc, (TrialFailure, DataError, StudySpecError)):
                raise
            self.tracker.log_text(run_id, traceback.format_exc(), "traceback.txt")
            raise TrialFailure(reason) from exc
        finally:
            if not keep and (folder / "checkpoints").is_dir():
                shutil.rmtree(folder / "checkpoints")
        if pruned is not None:
            raise pruned
        self.log(f"trial {trial.number}: {_values_text(self.spec, values)}")
        return values if self.spec.multi_objective else values[0]


def _train_trial(spec: StudySpec, params: dict[str, Any], trial: optuna.Trial, tracker: Tracker,
                 run_id: str, run_dir: Path, quiet: bool, doctor: bool = False,
                 resume: Path | None = None, extra: Sequence[Callback] = ()) -> list[float]:
    try:
        cfg = resolve(spec.overrides(params))
    except ConfigError as exc:
        tracker.log_params(run_id, params)
        raise TrialFailure(f"the sampled config is invalid: {exc}") from None
    if doctor:
        tracker.set_tags(run_id, summary_tags(tracked_doctor(tracker, spec.overrides(params))))
    callbacks = [DivergenceGuard(), *extra,
                 *([] if spec.multi_objective else [PruningCallback(trial)])]
    outcome = train_in_run(tracker, run_id, cfg, callbacks=callbacks, run_dir=run_dir, quiet=quiet,
                           resume=resume)
    values = []
    for metric in spec.metrics:
        key = f"final_{metric}"
        if key not in outcome.final:
            raise StudySpecError(f"objective metric {metric!r} was not computed by the run "
                                 f"(available: {', '.join(sorted(outcome.final))})")
        values.append(outcome.final[key])
    if not all(math.isfinite(v) for v in values):
        raise TrialFailure(f"objective is not finite: {dict(zip(spec.metrics, values))}")
    return values


# ------------------------------------------------------------------------------------------------
# workers
# ------------------------------------------------------------------------------------------------

def run_worker(spec: StudySpec, storage_url: str, tracking_uri: str, options: WorkerOptions,
               queued: bool, timeout: float | None, stop: StopRequest,
               log: Callable[[str], None]) -> int | None:
    """Run trials of the existing study of ``spec``; return the signal that stopped the worker, or
    None.

    ``queued``: take the study's queued trials (:class:`TrialQueue`) until none is left and no
    trial of the study is running anywhere (a worker that is done waits for the running ones, to
    retry any whose worker dies); ``timeout`` (seconds) stops taking new ones. Otherwise start
    trials until ``timeout``. A trial stopped by a signal is queued for a retry.
    """
    tracker = Tracker(tracking_uri)
    retrier = Retrier(tracker, options.grace_period, log)
    storage = open_storage(storage_url, options.heartbeat_interval, options.grace_period,
                           retrier.on_stale)
    queue = TrialQueue(storage, spec.name) if queued else None
    retrier.queue = queue
    study, _ = open_study(spec, storage, join=True)
    parent = _await_attr(study, PARENT_ATTR, spec)
    runner = TrialRunner(spec, storage, tracker, tracker.experiment_id(spec.name), parent,
                         options, stop, log)
    started = time.monotonic()
    waiting = False
    try:
        while not stop.requested:
            if timeout is not None and time.monotonic() - started >= timeout:
                log(f"timeout ({timeout:g} s): no new trial is started")
                break
            if queue is not None and not queue.claim(runner.worker):
                running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if not running:
                    break
                if not waiting:
                    log(f"no trial left to start; waiting for the running trial(s) "
                        f"{', '.join(str(t.number) for t in running)} (a trial whose worker dies "
                        f"is failed after the {options.grace_period} s grace period and retried)")
                    waiting = True
                with _experimental_ok():
                    optuna.storages.fail_stale_trials(study)
                stop.wait(options.heartbeat_interval)
                continue
            if stop.requested:  # the signal came while this worker was claiming a trial
                if queue is not None:
                    queue.add(1, "handed back by a stopping worker")
                break
            waiting = False
            study.optimize(runner, n_trials=1, catch=(TrialFailure,), gc_after_trial=True)
    except KeyboardInterrupt as exc:
        if runner.interrupted is not None:
            failed = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(
                runner.study_id, runner.interrupted))
            if failed.state == TrialState.FAIL:
                retrier.retry(study, failed)
        return getattr(exc, "signum", signal.SIGINT)
    return stop.signum


def worker_main(spec: StudySpec, storage_url: str, tracking_uri: str, options: WorkerOptions,
                queued: bool, timeout: float | None, index: int, threads: int,
                quiet_logs: bool) -> int:
    """One worker process of :func:`run_study` (started by :func:`.workers.run_processes`);
    returns its exit code: 0, 2 (an error in the study's input), 128 + signal when stopped."""
    torch.set_num_threads(threads)
    if quiet_logs:
        quiet_loggers()
        optuna.logging.set_verbosity(optuna.logging.WARNING)

    def log(message: str) -> None:
        print(f"[worker {index}] {message}", flush=True)

    try:
        with StopRequest() as stop:
            signum = run_worker(spec, storage_url, tracking_uri, options, queued, timeout, stop,
                                log)
    except (ConfigError, DataError) as exc:
        print(f"[worker {index}] error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0 if signum is None else 128 + signum


def check_data(spec: StudySpec) -> None:
    """Decode the study's data set once (without keeping it) before any worker starts: a data
    problem stops the study here, naming the files, instead of failing in every trial. This also
    writes the embedded set before several workers could race to write it."""
    build_data(resolve({**spec.base, "data.cache_decoded": False}), log=lambda _msg: None)


def _reconcile(study: optuna.Study, tracker: Tracker, exp_id: str, parent: str,
               log: Callable[[str], None]) -> None:
    """Close what dead workers left open: trials silent past the grace period are failed (and
    retried), and MLflow runs still RUNNING whose trial has finished are closed KILLED."""
    with _experimental_ok():
        optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    runs = tracker.client.search_runs(
        [exp_id], f"attributes.status = 'RUNNING' and tags.`mlflow.parentRunId` = '{parent}'")
    for run in runs:
        number = int(run.data.tags["optuna.trial_number"])
        state = states.get(number)
        if state is None or not state.is_finished():
            continue
        reason = (f"its trial {number} is {state.name}, but the run was left RUNNING: its worker "
                  f"ended without closing it")
        tracker.set_tags(run.info.run_id, {FAIL_ATTR: reason, "optuna.state": state.name})
        tracker.terminate(run.info.run_id, "KILLED")
        log(f"closed MLflow run {run.info.run_id} KILLED: {reason}")


def _enqueue(study: optuna.Study, spec: StudySpec, queue: TrialQueue, n_trials: int,
             created: bool, log: Callable[[str], None]) -> None:
    if spec.sampler == "grid":
        # Optuna's grid sampler stops a study whose grid is used up; queued trials beyond it
        # would re-run grid points
        size = math.prod(len(p.grid()) for p in spec.space.values())
        left = max(size - len(study.trials) - queue.pending(), 0)
        if n_trials > left:
            log(f"the grid has {size} points and {size - left} are taken: queuing {left} "
                f"trial(s), not {n_trials}")
            n_trials = left
    if created and spec.baseline:
        study.enqueue_trial(spec.baseline_params(), user_attrs={BASELINE_ATTR: True})
    queue.add(n_trials, f"added by study run on {worker_label()}")


def _close_parent(tracker: Tracker, parent: str, study: optuna.Study, queue: TrialQueue,
                  signum: int | None, log: Callable[[str], None]) -> None:
    if signum is not None:
        tracker.terminate(parent, "KILLED")
        return
    active = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    pending = queue.pending()
    if active or pending:
        log(f"{len(active)} trial(s) still running or waiting and {pending} queued: the parent run "
            f"stays RUNNING (`study run {study.study_name} --join` takes the queued ones)")
        return
    tracker.terminate(parent, "FINISHED")


def run_study(spec: StudySpec, storage_url: str, tracking_uri: str, n_trials: int | None = None,
              timeout: float | None = None, export: str | Path | None = None,
              keep_checkpoints: bool = False, quiet: bool = False,
              log: Callable[[str], None] = print, doctor: bool = False, workers: int = 1,
              join: bool = False, heartbeat_interval: int = HEARTBEAT_INTERVAL,
              grace_period: int = GRACE_PERIOD, threads: int | None = None,
              quiet_logs: bool = False) -> StudyOutcome:
    """Run (or resume) the study of ``spec`` with ``workers`` processes on this machine, then
    summarise it (:func:`summarize`).

    ``n_trials`` (default from the spec) trials are added to the study's queue and run by
    whichever worker of the study is free, on this machine or another one running the same study;
    ``join`` adds none and works on the queue. Without ``n_trials`` workers start trials until
    ``timeout``. ``workers`` = 1 runs in this process; more start worker processes
    (:func:`worker_main`) with ``threads`` torch threads each (default: the CPUs shared out).
    ``doctor``: run the doctor slice (:mod:`.doctor`) of every trial's config before training it
    and tag the trial's run with its summary. ``quiet_logs``: worker processes silence the
    MLflow/Optuna loggers (this process's are the caller's business).

    Raises :class:`.workers.Interrupted` after the summary when SIGINT/SIGTERM stopped the run,
    and :class:`WorkersFailed` when a worker process ended abnormally.
    """
    if join and n_trials is not None:
        raise StudySpecError("--join adds no trials to the study; leave out --n-trials")
    n_trials = None if join else (n_trials if n_trials is not None else spec.n_trials)
    timeout = timeout if timeout is not None else spec.timeout
    if not join and n_trials is None and timeout is None:
        raise StudySpecError(f"{spec.path}: give n_trials or timeout ([study] or "
                             f"--n-trials/--timeout)")
    if n_trials is not None and n_trials < 1:
        raise StudySpecError(f"--n-trials must be >= 1, got {n_trials}")
    if workers < 1:
        raise StudySpecError(f"--workers must be >= 1, got {workers}")
    if heartbeat_interval < 1 or grace_period <= heartbeat_interval:
        raise StudySpecError(f"--grace-period ({grace_period} s) must be longer than "
                             f"--heartbeat-interval ({heartbeat_interval} s), which must be >= 1 s")
    check_data(spec)
    queued = join or n_trials is not None
    options = WorkerOptions(heartbeat_interval, grace_period, keep_checkpoints,
                            quiet=quiet or workers > 1, doctor=doctor)
    tracker = Tracker(tracking_uri)
    retrier = Retrier(tracker, grace_period, log)
    storage = open_storage(storage_url, heartbeat_interval, grace_period, retrier.on_stale)
    queue = TrialQueue(storage, spec.name)
    retrier.queue = queue if queued else None
    study, created = open_study(spec, storage, join=join)
    study_id = storage.get_study_id_from_name(spec.name)
    exp_id = tracker.experiment_id(spec.name)
    parent = _parent_run(study, spec, tracker, exp_id, study_id, created)
    try:
        _reconcile(study, tracker, exp_id, parent, log)
        if n_trials is not None:
            _enqueue(study, spec, queue, n_trials, created, log)
        if workers == 1:
            with StopRequest() as stop:
                signum = run_worker(spec, storage_url, tracking_uri, options, queued, timeout,
                                    stop, log)
            failed: list[WorkerExit] = []
        else:
            if storage_url.startswith("sqlite"):
                log("note: SQLite serves the workers of one machine; to run a study on several "
                    "machines use PostgreSQL (--storage postgresql://...)")
            each = threads or max(1, len(os.sched_getaffinity(0)) // workers)
            log(f"starting {workers} worker processes, {each} torch thread(s) each")
            exits, signum = run_processes(worker_main, [
                {"spec": spec, "storage_url": storage_url, "tracking_uri": tracking_uri,
                 "options": options, "queued": queued, "timeout": timeout, "index": i,
                 "threads": each, "quiet_logs": quiet_logs} for i in range(workers)])
            for e in exits:
                log(e.describe())
            stopped = None if signum is None else 128 + signum
            failed = [e for e in exits if not e.ok and e.returncode != stopped]
        outcome = summarize(study, spec, tracker, parent, export, log)
    except KeyboardInterrupt:
        tracker.terminate(parent, "KILLED")
        raise
    except BaseException as exc:
        tracker.set_tags(parent, {FAIL_ATTR: f"{type(exc).__name__}: {exc}"[:FAIL_REASON_LIMIT]})
        tracker.terminate(parent, "FAILED")
        raise
    _close_parent(tracker, parent, study, queue, signum, log)
    if signum is not None:
        raise Interrupted(signum, f"study {spec.name!r} stopped by {signal_name(signum)}; a trial "
                                  f"it interrupted is queued for a retry that resumes from its "
                                  f"last checkpoint (`remdi-exp study run {spec.name} --join` "
                                  f"with the same --storage runs it)")
    if failed:
        raise WorkersFailed(failed)
    return outcome


# ------------------------------------------------------------------------------------------------
# after the run
# ------------------------------------------------------------------------------------------------

def _values_text(spec: StudySpec, values: list[float]) -> str:
    return ", ".join(f"{m} = {v:.4f}" for m, v in zip(spec.metrics, values))


def _pick(spec: StudySpec, best: list[FrozenTrial]) -> FrozenTrial:
    """The exported trial: the best one, or on a Pareto front the best by the first metric."""
    sign = 1.0 if spec.directions[0] == "maximize" else -1.0
    return max(best, key=lambda t: sign * t.values[0])


def best_config_toml(spec: StudySpec, trial: FrozenTrial) -> str:
    cfg = resolve(spec.overrides(trial.params))
    values = _values_text(spec, trial.values)
    header = (f"# best trial {trial.number} of study {spec.name!r} ({values})\n"
              f"# MLflow run {trial.user_attrs.get(RUN_ATTR)}; full resolved config\n")
    return header + dump_toml(cfg.to_flat())


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value(s), duration, params, MLflow run id; where any
    trial has them, the worker that ran it, the trial it retries and why it failed."""
    df = study.trials_dataframe(attrs=("number", "state", "value" if len(study.directions) == 1
                                       else "values", "duration", "params", "user_attrs",
                                       "system_attrs"))
    keep = {f"user_attrs_{RUN_ATTR}": RUN_ATTR, f"user_attrs_{WORKER_ATTR}": WORKER_ATTR,
            "system_attrs_failed_trial": "retry_of", f"user_attrs_{FAIL_ATTR}": FAIL_ATTR}
    drop = [c for c in df.columns
            if c.startswith(("user_attrs_", "system_attrs_")) and c not in keep]
    df = df.drop(columns=drop).rename(columns=keep)
    if "retry_of" in df.columns:
        df["retry_of"] = df["retry_of"].astype("Int64")
    return df.rename(columns=lambda c: c[len("params_"):] if c.startswith("params_") else c)


def _importance_figure(importances: dict[str, float], title: str) -> Figure:
    fig = Figure(figsize=(7.0, 0.45 * len(importances) + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="#4c72b0")
    ax.set_xlabel("importance (normalised)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _save_pyplot(tracker: Tracker, parent: str, ax: Any, artifact: str) -> None:
    fig = ax.figure
    try:
        tracker.log_figure(parent, fig, artifact)
    finally:
        plt.close(fig)


def _importances(study: optuna.Study, spec: StudySpec, i: int) -> dict[str, float]:
    if not spec.multi_objective:
        return optuna.importance.get_param_importances(study)
    # with an explicit target the default evaluator ranks params for *low* values
    sign = -1.0 if spec.directions[i] == "maximize" else 1.0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*importances of params to achieve low")
        return optuna.importance.get_param_importances(study, target=lambda t: sign * t.values[i])


def summarize(study: optuna.Study, spec: StudySpec, tracker: Tracker, parent: str,
              export: str | Path | None, log: Callable[[str], None]) -> StudyOutcome:
    """Best trial(s), best config TOML, trials table, importances and plots on the parent run."""
    trials = trials_frame(study)
    log(to_text(trials, ".4f"))
    tracker.log_text(parent, trials.to_csv(index=False), "trials.csv")
    completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
    states = {s.name: sum(t.state == s for t in study.trials) for s in TrialState}
    tracker.log_metrics(parent, {f"trials_{k.lower()}": v for k, v in states.items() if v},
                        step=len(study.trials))
    outcome = StudyOutcome(spec.name, parent, trials, [], None, {})
    if not completed:
        log(f"study {spec.name}: no completed trial yet, so no best config")
        return outcome
    outcome.best = list(study.best_trials) if spec.multi_objective else [study.best_trial]
    chosen = _pick(spec, outcome.best)
    for t in outcome.best:
        log(f"best trial {t.number}: {_values_text(spec, t.values)}; MLflow run "
            f"{t.user_attrs.get(RUN_ATTR)}; params {t.params}")
    outcome.best_config = best_config_toml(spec, chosen)
    tracker.log_text(parent, outcome.best_config, "best_config.toml")
    tracker.set_tags(parent, {"best_trial": chosen.number,
                              "best_mlflow_run_id": chosen.user_attrs.get(RUN_ATTR)})
    tracker.log_metrics(parent, {f"best_{m}": v for m, v in zip(spec.metrics, chosen.values)},
                        step=len(study.trials))
    if export is not None:
        Path(export).parent.mkdir(parents=True, exist_ok=True)
        Path(export).write_text(outcome.best_config, encoding="utf-8")
        log(f"best config written to {export}")

    for i, metric in enumerate(spec.metrics):
        target = (lambda t, i=i: t.values[i]) if spec.multi_objective else None
        with warnings.catch_warnings():
            # optuna flags its matplotlib plots as experimental on every call; known and accepted
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            ax = optuna.visualization.matplotlib.plot_optimization_history(
                study, target=target, target_name=metric)
            _save_pyplot(tracker, parent, ax, f"plots/optimization_history_{metric}.png")
            ax = optuna.visualization.matplotlib.plot_parallel_coordinate(
                study, target=target, target_name=metric)
            # optuna's default size crams one axis per parameter into 6 inches
            ax.figure.set_size_inches(max(6.0, 1.4 * len(spec.space) + 3.0), 6.0)
            _save_pyplot(tracker, parent, ax, f"plots/parallel_coordinate_{metric}.png")
        if len(completed) < 2:
            note = (f"parameter importances of {metric} skipped: they need at least 2 completed "
                    f"trials, the study has {len(completed)}")
            log(note)
            tracker.log_text(parent, note + "\n", f"importances_{metric}.txt")
            continue
        importances = _importances(study, spec, i)
        outcome.importances[metric] = importances
        tracker.log_text(parent, json.dumps(importances, indent=2), f"importances_{metric}.json")
        figure = _importance_figure(importances, f"parameter importances ({metric})")
        tracker.log_figure(parent, figure, f"plots/importances_{metric}.png")
        log(f"importances ({metric}): " + ", ".join(f"{k} {v:.3f}" for k, v in importances.items()))
    return outcome


def _study_names(storage: optuna.storages.RDBStorage) -> list[str]:
    """The studies in the storage, without the helper studies that hold trial queues."""
    return [n for n in optuna.get_all_study_names(storage) if not n.endswith(QUEUE_SUFFIX)]


def load_study(name: str, storage_url: str) -> optuna.Study:
    storage = open_storage(storage_url)
    names = _study_names(storage)
    if name not in names:
        raise StudySpecError(f"no study {name!r} in {storage_url}; studies there: "
                             f"{', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)
