"""Check 2: learning-rate sanity per optimiser parameter group.

The LR every training batch steps with is read from the optimiser in the per-batch hook (after the
trainer's per-batch loss function, before backward and the step). Every scheduler of the trainer
steps between epochs and the mask unfreeze sets its LR at the start of an epoch, so a group's LR is
constant within an epoch; a change between two batches of one epoch is a per-batch update (the
pre-fix mask-LR multiply, §5.5). An LR below :data:`LR_COLLAPSE` is collapsed: at such a value a
step moves no parameter of any realistic magnitude (float32 spacing near 1.0 is 1.2e-7, near 1e-3
still 1.2e-10).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from remdinet.fixes import FixSet

from .attribution import attribute
from .report import Finding

LR_COLLAPSE = 1e-12


@dataclass
class GroupTrace:
    first: float
    last: float
    low: float
    high: float
    changes_in_epoch: list[tuple[int, int, float, float]] = field(default_factory=list)
    low_at: int = 0


class LRMonitor:
    def __init__(self, fixset: FixSet) -> None:
        self.fixset = fixset
        self.groups: dict[str, GroupTrace] = {}
        self._epoch: int | None = None

    def on_train_batch(self, trainer, epoch: int, index: int) -> None:
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

    def findings(self) -> list[Finding]:
        out = []
        for name, t in self.groups.items():
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
                out.append(Finding("lr", name, value, "flag", "; ".join(problems), by, switch, data))
            else:
                out.append(Finding("lr", name, value, "ok", data=data))
        return out
