"""``batch_dependence``: an image's output must not depend on the other images in its batch.

The mixed probe batch is compared with each of its images alone, in eval mode and in the train pass
(:class:`~..branches.FlowMonitor`). A per-image model gives each image the same output in any batch
up to float noise (:data:`BATCH_TOLERANCE`); a decision on a batch statistic does not.
"""
from __future__ import annotations

from ..attribution import attribute
from ..branches import FlowMonitor
from ..report import Finding
from ._base import Check

BATCH_TOLERANCE = 1e-4


class BatchDependence(Check):
    name = "batch_dependence"
    observer = FlowMonitor

    def findings(self) -> list[Finding]:
        diff = self.observed.batch_diff
        value = f"max |batched - alone| {diff:.1e}"
        if diff > BATCH_TOLERANCE:
            by, switch = attribute(self.fixset, "batch_dependence")
            flipped = ", ".join(self.observed.flips) or ("no branch flipped: a continuous batch "
                                                         "statistic")
            return [Finding(self.name, "enhanced", value, "flag",
                            f"an image's output depends on the other images in its batch "
                            f"({flipped})", by, switch, {"max_difference": diff})]
        return [Finding(self.name, "enhanced", value, "ok", data={"max_difference": diff})]
