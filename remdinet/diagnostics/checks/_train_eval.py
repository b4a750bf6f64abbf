"""``train_eval``: train/eval divergence of the whole output and of each top-level block
(:class:`~..modes.ModeMonitor`, which compares each block on the same inputs).

Both passes are deterministic, so any difference above float noise (:data:`MODE_TOLERANCE`) is
real: a block whose train pass differs from its eval mode is flagged (a mode-dependent transform);
an output that differs while no single block does is flagged too.
"""
from __future__ import annotations

from ..attribution import attribute
from ..modes import ModeMonitor
from ..report import Finding
from ._base import Check

MODE_TOLERANCE = 1e-4


class TrainEval(Check):
    name = "train_eval"
    observer = ModeMonitor

    def findings(self) -> list[Finding]:
        out = []
        whole = self.observed.whole
        diverging = [n for n, d in self.observed.blocks.items() if d > MODE_TOLERANCE]
        value = f"max |train - eval| {whole:.1e}"
        if whole > MODE_TOLERANCE and not diverging:
            out.append(Finding(self.name, "enhanced", value, "flag",
                               "the output depends on the mode, but no single block does",
                               data={"max_difference": whole}))
        else:
            out.append(Finding(self.name, "enhanced", value,
                               "ok" if not diverging else "note",
                               "" if not diverging else f"caused by {', '.join(diverging)}",
                               data={"max_difference": whole}))
        for name, d in self.observed.blocks.items():
            value = f"max |train - eval| {d:.1e}"
            if d > MODE_TOLERANCE:
                by, switch = attribute(self.fixset, f"mode:{name}")
                out.append(Finding(self.name, name, value, "flag",
                                   f"{name} computes something else in training than in eval "
                                   f"mode on the same input (BatchNorm, dropout and dither "
                                   f"neutralised)", by, switch, {"max_difference": d}))
            else:
                out.append(Finding(self.name, name, value, "ok", data={"max_difference": d}))
        return out
