"""What the doctor's checks read: an :class:`Observer` collects what the slice shows through the
trainer's events and the probes (:mod:`.checks` turns it into findings)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .blocks import GradProbe
from .probes import Probe


@dataclass(frozen=True)
class Step:
    """One training batch, as the trainer's ``on_train_batch`` passes it, with the per-block
    gradient probe of its live graph."""
    epoch: int
    index: int
    batch: dict
    out: dict
    result: Any  # the batch's LossOutput
    loss: torch.Tensor
    grads: GradProbe


class Observer:
    """The trainer hooks of a family of checks; each is a no-op unless overridden. The probe hooks
    get copies of the model (:func:`.modes.probe_copy`), never the trainer's."""

    def on_train_start(self, model: nn.Module) -> None:
        """Before the first training batch."""

    def on_train_batch(self, trainer, step: Step) -> None:
        """Every training batch, after the loss and before backward."""

    def on_stage_probe(self, trainer, stage: int, model: nn.Module,
                       outputs: list[tuple[Probe, dict]]) -> None:
        """At the end of each stage: a train-pass copy of the model and its outputs on probes."""

    def on_slice_probe(self, model: nn.Module, probes: list[Probe]) -> None:
        """At the end of the slice: a probe copy of the model and every probe."""

    def on_train_end(self, model: nn.Module) -> None:
        """After the last epoch."""
