"""In-place parameter clamps applied by a forward pre-hook, as the reference does (§1.4.14, §2.1).

Before every forward call the clamped parameters are clamped in place under no-grad (through
``.data``), so the forward always sees in-range values while the optimiser keeps its own view of the
parameter (§8.1.25). For diagnosis each hook also records the fraction of elements that sit at a
bound after clamping; :class:`ClampRecorder` averages it over the forwards since its last reset.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Bound:
    """Element-wise range ``[lo, hi]``; with ``identity`` the range is ``I + [lo, hi]`` for a 3×3(×1×1)
    weight (diagonal in ``[1 + lo, 1 + hi]``, off-diagonal in ``[lo, hi]``)."""
    lo: float
    hi: float
    identity: bool = False

    @classmethod
    def flat(cls, lo: float, hi: float) -> "Bound":
        return cls(lo, hi, False)

    @classmethod
    def around_identity(cls, delta: float) -> "Bound":
        return cls(-delta, delta, True)

    def tensors(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.identity:
            eye = torch.eye(3, dtype=p.dtype, device=p.device).reshape(p.shape)
            return eye + self.lo, eye + self.hi
        return (torch.tensor(self.lo, dtype=p.dtype, device=p.device),
                torch.tensor(self.hi, dtype=p.dtype, device=p.device))


class ClampRecorder:
    """Average fraction of elements at a bound, per parameter, since the last reset."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def record(self, key: str, fraction: torch.Tensor) -> None:
        self._sums[key] = self._sums[key] + fraction if key in self._sums else fraction
        self._counts[key] = self._counts.get(key, 0) + 1

    def report(self) -> dict[str, float]:
        return {k: float(s) / self._counts[k] for k, s in self._sums.items()}

    def reset(self) -> None:
        self._sums.clear()
        self._counts.clear()


class ClampHook:
    """Forward pre-hook: clamp the named parameters of the module it is registered on.

    A callable object (not a closure) so that ``copy.deepcopy`` of the model copies the hook along
    with the module it acts on.
    """

    def __init__(self, prefix: str, bounds: dict[str, Bound], recorder: ClampRecorder) -> None:
        self.prefix = prefix
        self.bounds = bounds
        self.recorder = recorder
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _limits(self, name: str, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (name, p.device, p.dtype, tuple(p.shape))
        if key not in self._cache:
            self._cache[key] = self.bounds[name].tensors(p)
        return self._cache[key]

    def __call__(self, module: nn.Module, args: tuple) -> None:
        with torch.no_grad():
            for name in self.bounds:
                data = getattr(module, name).data
                lo, hi = self._limits(name, data)
                data.clamp_(min=lo, max=hi)
                at_bound = (data <= lo) | (data >= hi)
                self.recorder.record(f"{self.prefix}.{name}", at_bound.float().mean())


def install_clamps(module: nn.Module, prefix: str, bounds: dict[str, Bound],
                   recorder: ClampRecorder) -> None:
    """Clamp ``module``'s parameters named in ``bounds`` before each of its forward calls."""
    for name in bounds:
        if not isinstance(getattr(module, name, None), nn.Parameter):
            raise AttributeError(f"{prefix}: no parameter named {name!r} to clamp")
    module.register_forward_pre_hook(ClampHook(prefix, bounds, recorder))
