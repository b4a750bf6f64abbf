"""``trainable``: a block that is trainable during a stage but receives exactly zero gradient on
every batch of it (:class:`~..freezing.FreezeMonitor`) is flagged: it sits in the optimiser and
never learns (the pre-fix curve estimator, which never ran).
"""
from __future__ import annotations

from ..attribution import attribute
from ..freezing import FreezeMonitor
from ..report import Finding
from ._base import Check


class Trainable(Check):
    name = "trainable"
    observer = FreezeMonitor

    def findings(self) -> list[Finding]:
        out = []
        for stage in sorted(self.observed.stages):
            for block, b in self.observed.stages[stage].blocks.items():
                subject = f"s{stage}:{block}"
                value = f"{b.trainable}/{b.total} trainable, |g| {b.grad:.1e}"
                data = {"trainable": b.trainable, "total": b.total, "grad_sum": b.grad,
                        "batches_trainable": b.batches_trainable}
                if b.trainable and b.grad == 0.0:
                    by, switch = attribute(self.fixset, f"block:{block}")
                    out.append(Finding(self.name, subject, value, "flag",
                                       f"{b.trainable} trainable parameters received no gradient on "
                                       f"any of {b.batches_trainable} batches", by, switch, data))
                else:
                    out.append(Finding(self.name, subject, value, "ok", data=data))
        return out
