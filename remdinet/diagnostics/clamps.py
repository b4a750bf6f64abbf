"""Clamp pressure, for the ``clamp`` check (:mod:`.checks`).

The model's clamp hooks record, at every forward, the fraction of each clamped parameter's
elements that sit at a bound after clamping (``model.clamp_report()``, averaged over the forwards
since the slice started).
"""
from __future__ import annotations

from torch import nn

from .observer import Observer


class ClampMonitor(Observer):
    def __init__(self) -> None:
        self.report: dict[str, float] = {}  # parameter -> fraction of element-forwards at a bound

    def on_train_start(self, model: nn.Module) -> None:
        model.reset_clamp_report()

    def on_train_end(self, model: nn.Module) -> None:
        self.report = model.clamp_report()
