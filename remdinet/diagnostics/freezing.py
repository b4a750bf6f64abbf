"""Check 3: frozen/trainable accounting per stage.

For every stage and top-level block: how many parameters require grad, and the gradient the loss the
trainer backpropagates (mixed, clamped) sends into them, summed over the stage's batches. A block
that is trainable during a stage but receives exactly zero gradient on every batch of it is flagged:
it sits in the optimiser and never learns (the pre-fix curve estimator, which never ran).

Frozen parameters must stay frozen in every sense: the running statistics of BatchNorm layers whose
parameters are all frozen are compared at the start and the end of the slice; drift means the frozen
layers still change what the model computes (§8.1.15).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from remdinet.fixes import FixSet

from .attribution import attribute
from .blocks import block_of, param_counts
from .report import Finding


@dataclass
class BlockStage:
    trainable: int = 0  # max over the stage's batches
    total: int = 0
    batches_trainable: int = 0
    grad: float = 0.0


@dataclass
class FreezeRecord:
    blocks: dict[str, BlockStage] = field(default_factory=dict)
    batches: int = 0


def frozen_batchnorms(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and all(
                not p.requires_grad for p in m.parameters(recurse=False)):
            out[name] = m
    return out


class FreezeMonitor:
    def __init__(self, fixset: FixSet) -> None:
        self.fixset = fixset
        self.stages: dict[int, FreezeRecord] = {}
        self._bn_start: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._bn_drift: dict[str, float] = {}

    def on_train_start(self, model: nn.Module) -> None:
        self._bn_start = {name: (m.running_mean.detach().clone(), m.running_var.detach().clone())
                          for name, m in frozen_batchnorms(model).items()}

    def on_train_batch(self, trainer, loss_norms: dict[str, float] | None) -> None:
        rec = self.stages.setdefault(trainer.stage, FreezeRecord())
        rec.batches += 1
        for block, (trainable, total) in param_counts(trainer.model).items():
            b = rec.blocks.setdefault(block, BlockStage())
            b.total = total
            b.trainable = max(b.trainable, trainable)
            if trainable:
                b.batches_trainable += 1
                b.grad += (loss_norms or {}).get(block, 0.0)

    def on_train_end(self, model: nn.Module) -> None:
        modules = dict(model.named_modules())
        for name, (mean, var) in self._bn_start.items():
            m = modules[name]
            still_frozen = all(not p.requires_grad for p in m.parameters(recurse=False))
            if still_frozen:
                self._bn_drift[name] = max(float((m.running_mean - mean).abs().max()),
                                           float((m.running_var - var).abs().max()))

    def findings(self) -> list[Finding]:
        out = []
        for stage in sorted(self.stages):
            for block, b in self.stages[stage].blocks.items():
                subject = f"s{stage}:{block}"
                value = f"{b.trainable}/{b.total} trainable, |g| {b.grad:.1e}"
                data = {"trainable": b.trainable, "total": b.total, "grad_sum": b.grad,
                        "batches_trainable": b.batches_trainable}
                if b.trainable and b.grad == 0.0:
                    by, switch = attribute(self.fixset, f"block:{block}")
                    out.append(Finding("trainable", subject, value, "flag",
                                       f"{b.trainable} trainable parameters received no gradient on "
                                       f"any of {b.batches_trainable} batches", by, switch, data))
                else:
                    out.append(Finding("trainable", subject, value, "ok", data=data))
        drifting = {n: d for n, d in self._bn_drift.items() if d > 0.0}
        blocks = sorted({block_of(n) for n in drifting})
        value = f"{len(drifting)}/{len(self._bn_drift)} frozen BN layers drift"
        data = {"max_drift": max(drifting.values(), default=0.0), "layers": sorted(drifting)}
        if drifting:
            by, switch = attribute(self.fixset, "frozen_bn")
            out.append(Finding("frozen_bn", ",".join(blocks), value, "flag",
                               f"running statistics of {len(drifting)} BatchNorm layers with frozen "
                               f"parameters changed during the slice (max {data['max_drift']:.2e})",
                               by, switch, data))
        elif self._bn_drift:
            out.append(Finding("frozen_bn", "model", value, "ok", data=data))
        return out
