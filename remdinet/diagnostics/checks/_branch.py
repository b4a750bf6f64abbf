"""``branch``: declared branch points (``model.branches``) that decide on a batch statistic.

How often each fired while the slice trained is reported; a branch that decides differently for an
image in the probe batch than for the image alone (:class:`~..branches.FlowMonitor`) is flagged: a
Python ``if`` on a batch scalar.
"""
from __future__ import annotations

from remdinet.model import BRANCH_NAMES

from ..attribution import attribute
from ..branches import FlowMonitor
from ..report import Finding
from ._base import Check


class Branch(Check):
    name = "branch"
    observer = FlowMonitor

    def findings(self) -> list[Finding]:
        out = []
        for name in BRANCH_NAMES:
            counts = self.observed.training_counts.get(name, {"fired": 0, "total": 0})
            flips = self.observed.flips.get(name, [])
            if not counts["total"] and not flips:
                continue
            value = f"fired {counts['fired']}/{counts['total']} training forwards"
            data = {**counts, "flips": flips}
            if flips:
                by, switch = attribute(self.fixset, f"branch:{name}")
                out.append(Finding(self.name, name, value, "flag",
                                   f"decided on a batch statistic: differs between the batch and "
                                   f"an image alone ({flips[0]}, {len(flips)} cases)", by, switch,
                                   data))
            else:
                out.append(Finding(self.name, name, value, "ok",
                                   "a Python decision on a tensor value; it did not depend on the "
                                   "batch in the probes", data=data))
        return out
