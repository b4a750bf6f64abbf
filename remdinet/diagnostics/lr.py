"""The learning rate per optimiser parameter group, for the ``lr`` check (:mod:`.checks`).

The LR every training batch steps with is read from the optimiser in the per-batch hook (after the
trainer's per-batch loss function, before backward and the step). Every scheduler of the trainer
steps between epochs and the mask unfreeze sets its LR at the start of an epoch, so a group's LR is
constant within an epoch; the changes between two batches of one epoch are recorded.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .observer import Observer, Step


@dataclass
class GroupTrace:
    first: float
    last: float
    low: float
    high: float
    changes_in_epoch: list[tuple[int, int, float, float]] = field(default_factory=list)
    low_at: int = 0


class LRMonitor(Observer):
    def __init__(self) -> None:
        self.groups: dict[str, GroupTrace] = {}
        self._epoch: int | None = None

    def on_train_batch(self, trainer, step: Step) -> None:
        epoch, index = step.epoch, step.index
        same_epoch = epoch == self._epoch
        self._epoch = epoch
        for group in trainer.optimizer.param_groups:
            name, lr = group["name"], float(group["lr"])
            trace = self.groups.get(name)
            if trace is None:
                self.groups[name] = GroupTrace(lr, lr, lr, lr)
                continue
            if same_epoch and lr != trace.last:
                trace.changes_in_epoch.append((epoch, index, trace.last, lr))
            if lr < trace.low:
                trace.low, trace.low_at = lr, epoch
            trace.high = max(trace.high, lr)
            trace.last = lr
