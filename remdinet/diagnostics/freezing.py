"""Frozen/trainable accounting per stage, for the checks ``trainable`` and ``frozen_bn``
(:mod:`.checks`).

For every stage and top-level block: how many parameters require grad, and the gradient the loss the
trainer backpropagates (mixed, clamped) sends into them, summed over the stage's batches. The running
statistics of BatchNorm layers whose parameters are all frozen are compared at the start and the end
of the slice.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .blocks import param_counts
from .observer import Observer, Step


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


class FreezeMonitor(Observer):
    def __init__(self) -> None:
        self.stages: dict[int, FreezeRecord] = {}
        self._bn_start: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.bn_drift: dict[str, float] = {}  # frozen BatchNorm layer -> max running-stat change

    def on_train_start(self, model: nn.Module) -> None:
        self._bn_start = {name: (m.running_mean.detach().clone(), m.running_var.detach().clone())
                          for name, m in frozen_batchnorms(model).items()}

    def on_train_batch(self, trainer, step: Step) -> None:
        loss_norms = step.grads.norms(step.loss)
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
                self.bn_drift[name] = max(float((m.running_mean - mean).abs().max()),
                                           float((m.running_var - var).abs().max()))
