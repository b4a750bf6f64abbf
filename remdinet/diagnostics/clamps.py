"""Check 6: clamp pressure.

The model's clamp hooks record, at every forward, the fraction of each clamped parameter's
elements that sit at a bound after clamping (``model.clamp_report()``, averaged over the forwards
since the slice started). A parameter whose elements sit at a bound for at least
:data:`CLAMP_PRESSURE` of the element-forwards is held by its clamp rather than by the loss: the
optimiser keeps pushing it out and the hook keeps writing it back (§8.1.25). Half is the line
because a parameter that trains freely inside its range touches a bound on a small share of steps
at most, while a range that excludes where the loss wants the parameter pins it on nearly every
forward (the flat colour-enhancer clamp pins all six off-diagonal entries, 6/9 = 0.67).
"""
from __future__ import annotations

from remdinet.fixes import FixSet

from .attribution import attribute
from .report import Finding

CLAMP_PRESSURE = 0.5


def clamp_findings(report: dict[str, float], fixset: FixSet) -> list[Finding]:
    out = []
    for name, fraction in report.items():
        value = f"{fraction:.0%} at bound"
        data = {"fraction_at_bound": fraction}
        if fraction >= CLAMP_PRESSURE:
            by, switch = attribute(fixset, f"clamp:{name}")
            out.append(Finding("clamp", name, value, "flag",
                               f"{fraction:.0%} of its element-forwards sit at a clamp bound",
                               by, switch, data))
        else:
            out.append(Finding("clamp", name, value, "ok", data=data))
    return out
