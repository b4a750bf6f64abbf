"""The objective every worker runs: one trial = one MLflow child run of the job's parent run."""
from __future__ import annotations

import logging
import math
import traceback
from pathlib import Path
from typing import Any, Sequence

import optuna

from remdinet.config import ConfigError
from remdinet.data import DataError
from remdinet.paths import remove_inside
from remdinet.processes import process_label
from remdinet.resolve import resolve
from remdinet.train import Callback

from ..doctor import summary_tags, tracked_doctor
from ..owner import OWNER_TAG
from ..runs import BEST_TAG, train_in_run
from ..stopping import StopAtEpochEnd, StopRequest, interrupt_reason
from ..tracking import Tracker
from ._callbacks import DivergenceGuard, PruningCallback, TrialFailure
from ._devices import device_tags
from ._job import Job, Prepared
from ._options import EngineOptions
from ._retry import retried_trial
from ._trial import FAIL_ATTR, FAIL_REASON_LIMIT, RUN_ATTR, WORKER_ATTR

_log = logging.getLogger(__name__)


class JobInputError(ConfigError):
    """An error that would fail every trial alike (the data set, a missing objective metric):
    it is recorded on the trial and stops the worker."""


class TrialRunner:
    """Trains the trials of ``job`` in one worker.

    A trial's files are in ``<training.output_dir>/<job.folder>/<job.name>/trial_<N>/``
    (checkpoints in ``checkpoints/``, ``last.pth`` rewritten every epoch). A retry of trial N uses
    trial N's folder and resumes from its ``last.pth`` when that file is on this machine (tag
    ``resumed_from``: the file, or why training starts over). Checkpoints are deleted when the
    trial ends, unless ``keep_checkpoints`` or the trial was stopped by a signal (its retry needs
    them).

    Failures: a trial that raises, diverges (:class:`DivergenceGuard`) or has a non-finite
    objective is FAIL with the reason in the trial's user attribute ``fail_reason`` and the run's
    tag ``fail_reason`` (the run ends FAILED; unexpected errors also leave ``traceback.txt``), and
    the job goes on. A :class:`DataError` or :class:`JobInputError` would fail every trial alike:
    it is recorded the same way and stops the worker.
    """

    def __init__(self, job: Job, storage: optuna.storages.RDBStorage, tracker: Tracker,
                 parent: str, options: EngineOptions, stop: StopRequest,
                 index: int | None = None):
        self.job = job
        self.storage = storage
        self.study_id = storage.get_study_id_from_name(job.name)
        self.tracker = tracker
        self.exp_id = tracker.experiment_id(job.experiment)
        self.parent = parent
        self.options = options
        self.stop = stop
        self.worker = process_label()
        self.where = device_tags(index)
        self.output_root = Path(resolve(job.base).training.output_dir)
        self.run_root = self.output_root / job.folder / job.name
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
        retry_of = retried_trial(self.storage.get_trial(trial_id))
        # seeded per trial number, so that workers never share a random stream (make_sampler)
        trial.study.sampler = self.job.make_sampler(trial.number)
        prepared = self.job.prepare(trial)
        folder = self.run_root / f"trial_{trial.number if retry_of is None else retry_of}"
        resume, resumed_from = self._resume_point(folder, retry_of)
        tags = {"optuna.study_name": self.job.name, "optuna.study_id": self.study_id,
                "optuna.trial_number": trial.number, "optuna.trial_id": trial_id,
                "optuna.state": "RUNNING", OWNER_TAG: self.worker, **self.where, **prepared.tags}
        if retry_of is not None:
            tags.update({"optuna.retry_of": retry_of, "resumed_from": resumed_from})
            _log.info(f"trial {trial.number} retries trial {retry_of}; resumes from {resumed_from}")
        run_id = self.tracker.create_run(self.exp_id, prepared.run_name, tags,
                                         parent_run_id=self.parent)
        trial.set_user_attr(RUN_ATTR, run_id)
        trial.set_user_attr(WORKER_ATTR, self.worker)
        state, pruned, keep = "FAIL", None, self.options.keep_checkpoints
        extra = [StopAtEpochEnd(self.stop)]
        try:
            with self.tracker.terminating(run_id):
                try:
                    values = self._train(prepared, trial, run_id, folder, resume, extra)
                    state = "COMPLETE"
                except optuna.TrialPruned as exc:
                    state, pruned = "PRUNED", exc
                finally:
                    self.tracker.set_tags(run_id, {"optuna.state": state})
        except KeyboardInterrupt as exc:
            keep = True
            self.interrupted = trial.number
            # the same text as the run's fail_reason tag (Tracker.terminating)
            trial.set_user_attr(FAIL_ATTR, interrupt_reason(exc))
            raise
        except Exception as exc:
            # the same text as the run's fail_reason tag (Tracker.terminating)
            reason = f"{type(exc).__name__}: {exc}"[:FAIL_REASON_LIMIT]
            trial.set_user_attr(FAIL_ATTR, reason)
            if isinstance(exc, (TrialFailure, DataError, ConfigError)):
                raise
            self.tracker.log_text(run_id, traceback.format_exc(), "traceback.txt")
            raise TrialFailure(reason) from exc
        finally:
            if not keep and (folder / "checkpoints").is_dir():
                remove_inside(folder / "checkpoints", self.output_root)
                # no tag may point at a deleted file; the model is the run's MLflow model
                if BEST_TAG in self.tracker.tags_of(run_id):
                    self.tracker.client.delete_tag(run_id, BEST_TAG)
        if pruned is not None:
            raise pruned
        _log.info(f"trial {trial.number} ({prepared.run_name}): " + ", ".join(
                  f"{m} = {v:.4f}" for m, v in zip(self.job.metrics, values)))
        return values if self.job.multi_objective else values[0]

    def _train(self, prepared: Prepared, trial: optuna.Trial, run_id: str, folder: Path,
               resume: Path | None, extra: Sequence[Callback]) -> list[float]:
        try:
            cfg = resolve(prepared.overrides)
        except ConfigError as exc:
            self.tracker.log_params(run_id, {k: v for k, v in prepared.overrides.items()
                                             if k not in self.job.base})
            raise TrialFailure(f"the sampled config is invalid: {exc}") from None
        if self.options.doctor:
            self.tracker.set_tags(run_id, summary_tags(tracked_doctor(self.tracker,
                                                                      prepared.overrides)))
        callbacks: list[Any] = [DivergenceGuard(), *extra]
        if prepared.prunable:
            callbacks.append(PruningCallback(trial, self.job.prune_metric))
        outcome = train_in_run(self.tracker, run_id, cfg, callbacks=callbacks, run_dir=folder,
                               quiet=self.options.quiet, resume=resume,
                               model=self.job.logs_model)
        values = []
        for metric in self.job.metrics:
            key = f"final_{metric}"
            if key not in outcome.final:
                raise JobInputError(f"objective metric {metric!r} was not computed by the run "
                                    f"(available: {', '.join(sorted(outcome.final))})")
            values.append(outcome.final[key])
        if not all(math.isfinite(v) for v in values):
            raise TrialFailure(f"objective is not finite: {dict(zip(self.job.metrics, values))}")
        return values
