"""Trainer callbacks of a trial: pruning and divergence."""
from __future__ import annotations

import math
from typing import Any

import optuna

from remdinet.train import Callback, metric_names


class TrialFailure(RuntimeError):
    """A trial that cannot yield a value (invalid sampled config, divergence, non-finite
    objective, an error while training); the job goes on."""


class PruningCallback(Callback):
    """Reports ``metric`` per validation epoch; raises TrialPruned when the pruner says so.
    A run resumed from a checkpoint first reports the validation epochs it restored."""

    def __init__(self, trial: optuna.Trial, metric: str = metric_names.VAL_PSNR):
        self.trial = trial
        self.metric = metric

    def on_train_start(self, trainer: Any) -> None:
        for metrics in trainer.history:
            if self.metric in metrics:
                self.trial.report(float(metrics[self.metric]),
                                  step=int(metrics[metric_names.EPOCH]))

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

    KEYS = (metric_names.TRAIN_LOSS, metric_names.VAL_PSNR, metric_names.VAL_SSIM,
            metric_names.VAL_MS_SSIM)

    def on_epoch_end(self, trainer: Any, epoch: int, stage: int, metrics: dict[str, float]) -> None:
        bad = {k: metrics[k] for k in self.KEYS if k in metrics and not math.isfinite(metrics[k])}
        if bad:
            values = ", ".join(f"{k} = {v}" for k, v in bad.items())
            val_skipped = metrics.get(metric_names.VAL_SKIPPED_BATCHES)
            val = (f", {int(val_skipped)} validation batch(es) with non-finite metrics"
                   if val_skipped else "")
            raise TrialFailure(f"diverged at epoch {epoch}: {values} "
                               f"({int(metrics[metric_names.SKIPPED_BATCHES])} training batch(es) of the epoch "
                               f"skipped for a non-finite loss{val})")
