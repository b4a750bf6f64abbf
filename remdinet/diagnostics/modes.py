"""Train/eval divergence, for the ``train_eval`` check (:mod:`.checks`), and the model copies
every probe runs on.

Probes never touch the trainer's model: each runs on a deep copy (BatchNorm statistics, the mask's
call counter, the clamp and branch recorders are all copied with it), under a forked RNG.

The *train pass* is the model in training mode with the effects that are train-time noise or
batch-statistics by design removed: BatchNorm and Dropout layers in eval mode and the mask
predictor's dither off. Whatever still differs between the train pass and eval mode is a
mode-dependent transform (the reference's train-only gray-world gains, the mask squared in eval but
not in early training). Each top-level block is compared on the *same* inputs (the ones it received
in the eval pass), so a divergence is pinned to the block that introduces it even when an upstream
block diverges too.
"""
from __future__ import annotations

import copy
from typing import Any, Iterator

import torch
from torch import nn

from .blocks import block_calls, present_blocks
from .observer import Observer
from .probes import Probe

_NEUTRAL_IN_TRAIN = (nn.modules.batchnorm._BatchNorm, nn.Dropout)


def probe_copy(model: nn.Module) -> nn.Module:
    """A deep copy of the model whose train-time noise is off (see the module docstring)."""
    clone = copy.deepcopy(model)
    for m in clone.modules():
        if hasattr(m, "dither_std"):
            m.dither_std = 0.0
    return clone


def set_mode(module: nn.Module, train: bool) -> nn.Module:
    """Eval mode, or the train pass (training mode, BatchNorm/Dropout in eval mode)."""
    module.train(train)
    if train:
        for m in module.modules():
            if isinstance(m, _NEUTRAL_IN_TRAIN):
                m.eval()
    return module


def tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a (nested) output: tensor, tuple/list, dict."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from tensors(v)
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from tensors(v)


def max_difference(a: Any, b: Any) -> float:
    pairs = list(zip(tensors(a), tensors(b)))
    return max((float((x.float() - y.float()).abs().max()) for x, y in pairs if x.numel()),
               default=0.0)


def block_inputs(model: nn.Module, x: torch.Tensor) -> tuple[dict, dict[str, tuple]]:
    """Run ``model(x)`` and return its output and the positional inputs of each top-level block."""
    with block_calls(model) as (inputs, _outputs):
        out = model(x)
    return out, inputs


class ModeMonitor(Observer):
    """Largest train-pass vs eval difference of the whole output and of each block, over probes."""

    def __init__(self) -> None:
        self.whole = 0.0
        self.blocks: dict[str, float] = {}

    def on_slice_probe(self, model: nn.Module, probes: list[Probe]) -> None:
        for p in probes:
            self._compare(model, p)

    def _compare(self, model: nn.Module, probe: Probe) -> None:
        x = probe.x.to(next(model.parameters()).device)
        with torch.no_grad():
            out_eval, inputs = block_inputs(set_mode(model, False), x)
            out_train = set_mode(model, True)(x)
            self.whole = max(self.whole, max_difference(out_train["enhanced"], out_eval["enhanced"]))
            for name, block in present_blocks(model).items():
                if name not in inputs:  # not run (the pre-fix curve branch)
                    continue
                o_eval = set_mode(block, False)(*inputs[name])
                o_train = set_mode(block, True)(*inputs[name])
                self.blocks[name] = max(self.blocks.get(name, 0.0), max_difference(o_train, o_eval))
