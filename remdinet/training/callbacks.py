"""Callback interface of the trainer.

The experiment layer subclasses :class:`Callback` for MLflow logging and Optuna pruning; the trainer
knows neither. Every method is optional. An exception raised by a callback (Optuna's ``TrialPruned``,
for instance) propagates out of :meth:`Trainer.fit` after the trainer has closed its progress bars
and written ``last.pth``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from .trainer import Trainer, TrainResult


class Callback:
    def on_train_start(self, trainer: "Trainer") -> None:
        """Called once, after the model, optimiser and (on resume) the saved state are ready."""

    def on_stage_start(self, trainer: "Trainer", stage: int, epoch: int) -> None:
        """Called when a stage begins (epoch 0 for stage 1, then at every stage change)."""

    def on_train_batch(self, trainer: "Trainer", epoch: int, index: int, batch: dict, out: dict,
                       result: Any, loss: Any) -> None:
        """Called for every training batch after its loss is computed and before backward.

        ``batch`` is the loader's batch (on the CPU), ``out`` the model's output dict, ``result`` the
        (mixed) :class:`~remdinet.losses.LossOutput` and ``loss`` the clamped scalar about to be
        backpropagated. The autograd graph is alive: a callback may take ``torch.autograd.grad``
        with ``retain_graph=True`` (the diagnostics do), but must not call ``backward`` or change
        the model, the optimiser or any RNG state.
        """

    def on_epoch_end(self, trainer: "Trainer", epoch: int, stage: int,
                     metrics: dict[str, float]) -> None:
        """Called after every epoch with the per-epoch metrics (see docs/architecture.md)."""

    def on_checkpoint(self, trainer: "Trainer", path: Path, epoch: int) -> None:
        """Called after a checkpoint file has been written."""

    def on_train_end(self, trainer: "Trainer", result: "TrainResult") -> None:
        """Called once when training finishes normally or stops early."""


class CallbackList:
    """Dispatches each event to the callbacks in order.

    Callbacks need not subclass :class:`Callback`; an object without a method for an event is not
    interested in it.
    """

    def __init__(self, callbacks: Iterable[Callback]):
        self.callbacks = list(callbacks)

    def __call__(self, event: str, *args: Any) -> None:
        for cb in self.callbacks:
            method = getattr(cb, event, None)
            if method is not None:
                method(*args)
