"""``supervision``: the stage criterion's fidelity weights (L1 reconstruction and SSIM,
:data:`~..gradients.SUPERVISION`) must not be scaled below their configured values.

A ramp that scales them (to 0 on the first epoch of stage 2 before fix ``ramp_keys``) is flagged;
stage 1's fixed criterion has none. The mixed (transition) L1 coefficient is reported too.
"""
from __future__ import annotations

from ..attribution import attribute
from ..gradients import TermMonitor
from ..report import Finding
from ._base import Check


class Supervision(Check):
    name = "supervision"
    observer = TermMonitor

    def findings(self) -> list[Finding]:
        out = []
        for stage in sorted(self.observed.stages):
            rec = self.observed.stages[stage]
            if stage == 1 or not rec.weight_ratios:
                continue
            key, (ratio, e) = min(rec.weight_ratios.items(), key=lambda kv: kv[1][0])
            mixed = min(rec.l1_coefficients, default=float("nan"))
            data = {"min_ratio": {k: v[0] for k, v in rec.weight_ratios.items()},
                    "min_mixed_l1_coefficient": mixed}
            value = f"{key} x{ratio:.2f} (mixed L1 coef min {mixed:.3f})"
            if ratio < 1.0 - 1e-9:
                by, switch = attribute(self.fixset, "supervision")
                out.append(Finding(self.name, f"s{stage}", value, "flag",
                                   f"the stage-{stage} criterion scales {key} to x{ratio:.3f} of its "
                                   f"configured value at epoch {e} of the stage (a ramp on the "
                                   f"fidelity term)", by, switch, data))
            else:
                out.append(Finding(self.name, f"s{stage}", value, "ok",
                                   "fidelity weights at their configured values", data=data))
        return out
