"""``lr``: learning-rate sanity per optimiser parameter group (:class:`~..lr.LRMonitor`).

A group's LR is constant within an epoch; a change between two batches of one epoch is a per-batch
update (the pre-fix mask-LR multiply, §5.5) and is flagged. So is an LR below :data:`LR_COLLAPSE`:
at such a value a step moves no parameter of any realistic magnitude (float32 spacing near 1.0 is
1.2e-7, near 1e-3 still 1.2e-10).
"""
from __future__ import annotations

from ..attribution import attribute
from ..lr import LRMonitor
from ..report import Finding
from ._base import Check

LR_COLLAPSE = 1e-12


class LearningRate(Check):
    name = "lr"
    observer = LRMonitor

    def findings(self) -> list[Finding]:
        out = []
        for name, t in self.observed.groups.items():
            value = f"{t.last:.1e} (min {t.low:.1e}, max {t.high:.1e})"
            data = {"first": t.first, "last": t.last, "min": t.low, "max": t.high,
                    "changes_within_epoch": [{"epoch": e, "batch": b, "from": a, "to": c}
                                             for e, b, a, c in t.changes_in_epoch]}
            problems = []
            if t.changes_in_epoch:
                e, b, a, c = t.changes_in_epoch[0]
                problems.append(f"changed {len(t.changes_in_epoch)} time(s) between batches of an "
                                f"epoch (first: epoch {e} batch {b}, {a:.1e} -> {c:.1e}); schedulers "
                                f"only step between epochs")
                value += f", {len(t.changes_in_epoch)} in-epoch changes"
            if t.low < LR_COLLAPSE:
                problems.append(f"collapsed to {t.low:.1e} (< {LR_COLLAPSE:g}) at epoch {t.low_at}")
            if problems:
                by, switch = attribute(self.fixset, f"lr:{name}")
                out.append(Finding(self.name, name, value, "flag", "; ".join(problems), by, switch,
                                   data))
            else:
                out.append(Finding(self.name, name, value, "ok", data=data))
        return out
