"""``frozen_bn``: frozen parameters must stay frozen in every sense. The running statistics of
BatchNorm layers whose parameters are all frozen (:class:`~..freezing.FreezeMonitor`) must not drift
between the start and the end of the slice; drift means the frozen layers still change what the
model computes (§8.1.15).
"""
from __future__ import annotations

from ..attribution import attribute
from ..blocks import block_of
from ..freezing import FreezeMonitor
from ..report import Finding
from ._base import Check


class FrozenBatchNorm(Check):
    name = "frozen_bn"
    observer = FreezeMonitor

    def findings(self) -> list[Finding]:
        bn_drift = self.observed.bn_drift
        drifting = {n: d for n, d in bn_drift.items() if d > 0.0}
        blocks = sorted({block_of(n) for n in drifting})
        value = f"{len(drifting)}/{len(bn_drift)} frozen BN layers drift"
        data = {"max_drift": max(drifting.values(), default=0.0), "layers": sorted(drifting)}
        if drifting:
            by, switch = attribute(self.fixset, "frozen_bn")
            return [Finding(self.name, ",".join(blocks), value, "flag",
                            f"running statistics of {len(drifting)} BatchNorm layers with frozen "
                            f"parameters changed during the slice (max {data['max_drift']:.2e})",
                            by, switch, data)]
        if bn_drift:
            return [Finding(self.name, "model", value, "ok", data=data)]
        return []
