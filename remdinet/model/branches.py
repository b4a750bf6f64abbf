"""Data-dependent decisions of the reference, in one place.

The reference takes several Python-level ``if`` decisions on batch-scalar statistics (§8.1.3). Each
one goes through :class:`Decisions`:

* reference mode: the statistic is a mean over the whole batch, the decision is a Python ``bool``
  (one device sync) and is counted in :class:`BranchRecorder` under its name;
* ``per_image_decisions`` correction: the statistic is a per-image mean of shape B×1×1×1 and the
  decision is applied per image with ``torch.where``. Nothing is recorded in this mode (counting
  would need a device sync per decision, which the correction exists to avoid).
"""
from __future__ import annotations

from typing import Callable

import torch

BRANCH_NAMES = ("curve_damping", "curve_colour_check", "decoder_saturation_check", "decoder_denorm",
                "final_saturation_boost", "affine_grayworld")


class BranchRecorder:
    """How often each data-dependent branch fired, out of how many evaluations."""

    def __init__(self) -> None:
        self._fired = dict.fromkeys(BRANCH_NAMES, 0)
        self._total = dict.fromkeys(BRANCH_NAMES, 0)

    def hit(self, name: str, fired: bool) -> None:
        if name not in self._total:
            raise KeyError(f"unknown branch {name!r}; valid: {', '.join(BRANCH_NAMES)}")
        self._total[name] += 1
        self._fired[name] += int(fired)

    def reset(self) -> None:
        for name in BRANCH_NAMES:
            self._fired[name] = 0
            self._total[name] = 0

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {n: {"fired": self._fired[n], "total": self._total[n]} for n in BRANCH_NAMES}


class Decisions:
    """Batch-scalar (reference) or per-image evaluation of the data-dependent branches."""

    def __init__(self, per_image: bool, branches: BranchRecorder) -> None:
        self.per_image = per_image
        self.branches = branches

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """Mean over everything (reference) or over all but the batch dim (B×1×1×1)."""
        if self.per_image:
            return t.mean(dim=tuple(range(1, t.dim())), keepdim=True)
        return t.mean()

    def check(self, name: str, cond: torch.Tensor) -> bool:
        """A Python decision on a scalar condition, recorded under ``name`` (reference mode only)."""
        fired = bool(cond)
        self.branches.hit(name, fired)
        return fired

    def apply(self, name: str, cond: torch.Tensor, new: Callable[[], torch.Tensor],
              old: torch.Tensor) -> torch.Tensor:
        """``new()`` where ``cond`` holds, else ``old``; per image or for the whole batch."""
        if self.per_image:
            return torch.where(cond, new(), old)
        return new() if self.check(name, cond) else old
