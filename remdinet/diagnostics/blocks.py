"""The model's top-level blocks and per-block gradient norms."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

# Attribute names of UnifiedLowLightEnhancer (docs/architecture.md), in forward order.
BLOCKS = ("snr_estimator", "snr_module", "semantic", "curve_estimator", "mask_predictor",
          "colour_head", "color_enhancer")


def present_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """The blocks the model has (absent ones are None on the model)."""
    return {name: getattr(model, name) for name in BLOCKS if getattr(model, name) is not None}


@contextmanager
def block_calls(model: nn.Module, convert: Callable[[Any], Any] = lambda obj: obj
                ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """While open, record the first call of each present top-level block: yields ``(inputs,
    outputs)``, ``name -> convert(positional args)`` and ``name -> convert(output)``; a block
    not called (the pre-fix curve branch) is absent. The hooks are removed on exit."""
    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] = {}

    # a hook that returns a value replaces the block's args or output: these return None
    def keep_input(name: str, args: tuple) -> None:
        if name not in inputs:
            inputs[name] = convert(args)

    def keep_output(name: str, out: Any) -> None:
        if name not in outputs:
            outputs[name] = convert(out)

    handles = []
    for name, block in present_blocks(model).items():
        handles.append(block.register_forward_pre_hook(
            lambda _m, args, name=name: keep_input(name, args)))
        handles.append(block.register_forward_hook(
            lambda _m, _a, out, name=name: keep_output(name, out)))
    try:
        yield inputs, outputs
    finally:
        for h in handles:
            h.remove()


def block_of(param_name: str) -> str:
    head = param_name.split(".", 1)[0]
    if head not in BLOCKS:
        raise KeyError(f"parameter {param_name!r} belongs to no top-level block of {BLOCKS}")
    return head


def trainable_by_block(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Parameters that currently require grad, grouped by block (every present block listed)."""
    out: dict[str, list[nn.Parameter]] = {name: [] for name in present_blocks(model)}
    for name, p in model.named_parameters():
        if p.requires_grad:
            out[block_of(name)].append(p)
    return out


def param_counts(model: nn.Module) -> dict[str, tuple[int, int]]:
    """``block -> (trainable, total)`` parameter counts."""
    out = {name: [0, 0] for name in present_blocks(model)}
    for name, p in model.named_parameters():
        counts = out[block_of(name)]
        counts[1] += p.numel()
        if p.requires_grad:
            counts[0] += p.numel()
    return {k: (v[0], v[1]) for k, v in out.items()}


class GradProbe:
    """Per-block gradient norms of scalars of one live graph w.r.t. the trainable parameters.

    The parameter list is fixed at construction (the ones requiring grad then), so several scalars
    of the same forward pass share it. ``norms(value)`` returns ``{block: ||d value / d params||}``
    for every present block (0.0 for a block without trainable parameters or outside the graph),
    or None when ``value`` has no autograd path at all (a constant).
    """

    def __init__(self, model: nn.Module) -> None:
        groups = trainable_by_block(model)
        self.blocks = list(groups)
        self.params = [p for ps in groups.values() for p in ps]
        self.owner = [i for i, ps in enumerate(groups.values()) for _ in ps]

    def norms(self, value: torch.Tensor) -> dict[str, float] | None:
        if not value.requires_grad:
            return None
        if not self.params:
            return dict.fromkeys(self.blocks, 0.0)
        grads = torch.autograd.grad(value, self.params, retain_graph=True, allow_unused=True)
        per_block: list[list[torch.Tensor]] = [[] for _ in self.blocks]
        for g, i in zip(grads, self.owner):
            if g is not None:
                per_block[i].append(g.detach().double().pow(2).sum())
        zero = torch.zeros((), dtype=torch.float64, device=self.params[0].device)
        sq = torch.stack([torch.stack(v).sum() if v else zero for v in per_block])
        # One device sync for all blocks.
        return dict(zip(self.blocks, sq.sqrt().tolist()))
