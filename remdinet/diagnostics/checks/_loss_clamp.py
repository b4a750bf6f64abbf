"""``loss_clamp``: batches whose total loss hit a clamp bound, where its gradient is exactly zero.

A batch counts as clamped when the total the trainer backpropagates differs from the sum of its
weighted terms.
"""
from __future__ import annotations

from ..attribution import attribute
from ..gradients import TermMonitor
from ..report import Finding
from ._base import Check


class LossClamp(Check):
    name = "loss_clamp"
    observer = TermMonitor

    def findings(self) -> list[Finding]:
        out = []
        for stage in sorted(self.observed.stages):
            rec = self.observed.stages[stage]
            value = f"{rec.clamped}/{rec.batches} batches clamped"
            data = {"clamped": rec.clamped, "batches": rec.batches}
            if rec.clamped:
                by, switch = attribute(self.fixset, "loss_clamp")
                out.append(Finding(self.name, f"s{stage}", value, "flag",
                                   "the total loss hit a clamp bound, where its gradient is zero",
                                   by, switch, data))
            else:
                out.append(Finding(self.name, f"s{stage}", value, "ok", data=data))
        return out
