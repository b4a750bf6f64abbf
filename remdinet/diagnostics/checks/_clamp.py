"""``clamp``: clamp pressure (:class:`~..clamps.ClampMonitor`).

A parameter whose elements sit at a bound for at least :data:`CLAMP_PRESSURE` of the
element-forwards is held by its clamp rather than by the loss: the optimiser keeps pushing it out
and the hook keeps writing it back (§8.1.25). Half is the line because a parameter that trains
freely inside its range touches a bound on a small share of steps at most, while a range that
excludes where the loss wants the parameter pins it on nearly every forward (the flat
colour-enhancer clamp pins all six off-diagonal entries, 6/9 = 0.67).
"""
from __future__ import annotations

from ..attribution import attribute
from ..clamps import ClampMonitor
from ..report import Finding
from ._base import Check

CLAMP_PRESSURE = 0.5


class ClampPressure(Check):
    name = "clamp"
    observer = ClampMonitor

    def findings(self) -> list[Finding]:
        out = []
        for name, fraction in self.observed.report.items():
            value = f"{fraction:.0%} at bound"
            data = {"fraction_at_bound": fraction}
            if fraction >= CLAMP_PRESSURE:
                by, switch = attribute(self.fixset, f"clamp:{name}")
                out.append(Finding(self.name, name, value, "flag",
                                   f"{fraction:.0%} of its element-forwards sit at a clamp bound",
                                   by, switch, data))
            else:
                out.append(Finding(self.name, name, value, "ok", data=data))
        return out
