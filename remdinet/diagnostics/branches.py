"""Non-differentiable control flow, for the checks ``input_gradient``, ``batch_dependence`` and
``branch`` (:mod:`.checks`).

* Input gradients: for the first image of each probe alone (train pass, see :mod:`.modes`), the
  gradient of the sum of each image-shaped output w.r.t. the input image, and, when one is zero,
  the blocks whose outputs have a zero input-gradient while one of their inputs has a non-zero
  one. (``snr_map`` is left out: the learnable SNR estimator reads a detached input, as the
  reference does.)
* The batch test: the mixed probe batch (one image of each kind) against each image alone, in
  eval mode and in the train pass, and each branch's decision for the batch against its decision
  for every image alone.
* Every declared branch point of the model (``model.branches``) is counted while the slice trains
  (how often it fired).
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import BLOCKS, block_calls
from .modes import set_mode, tensors
from .observer import Observer
from .probes import Probe, mixed_batch

# image-shaped outputs that depend on the input by design -> the block producing them
GRADIENT_OUTPUTS = {"enhanced": None, "curve_enhanced": "curve_estimator",
                    "curves": "curve_estimator", "semantic_enhanced": "semantic",
                    "mask": "mask_predictor"}


def _decisions(model: nn.Module) -> dict[str, bool]:
    """Which branch fired in the forward since the last reset (only branches that were evaluated)."""
    return {n: s["fired"] > 0 for n, s in model.branches.snapshot().items() if s["total"]}


def _input_grad_max(value: torch.Tensor | None, x: torch.Tensor) -> float | None:
    """max |d sum(value) / dx|, or None when ``value`` has no autograd path to ``x``."""
    if value is None or not value.requires_grad:
        return None
    (g,) = torch.autograd.grad(value.float().sum(), x, retain_graph=True, allow_unused=True)
    return None if g is None else float(g.abs().max())


def _any_input_gradient(values: list[torch.Tensor], x: torch.Tensor) -> bool:
    """Whether any of ``values`` has a non-zero gradient w.r.t. ``x`` (one backward pass for all:
    the gradient of their summed sums, where an exact cancellation is not a practical concern)."""
    linked = [v.float().sum() for v in values if v.requires_grad]
    return bool(linked) and bool(_input_grad_max(torch.stack(linked).sum(), x))


def _cutting_blocks(inputs: dict[str, list[torch.Tensor]], outputs: dict[str, list[torch.Tensor]],
                    x: torch.Tensor) -> list[str]:
    """Blocks (forward order) fed a tensor with a non-zero input-gradient whose outputs have
    none."""
    return [name for name in BLOCKS if name in outputs
            and _any_input_gradient(inputs[name], x) and not _any_input_gradient(outputs[name], x)]


class FlowMonitor(Observer):
    def __init__(self) -> None:
        self.gradients: dict[str, dict] = {}  # output -> {"probes", "zero", "no_path", "cut_by"}
        self.batch_diff = 0.0
        self.flips: dict[str, list[str]] = {}
        self.training_counts: dict[str, dict[str, int]] = {}

    def on_train_start(self, model: nn.Module) -> None:
        model.branches.reset()

    def on_slice_probe(self, model: nn.Module, probes: list[Probe]) -> None:
        device = next(model.parameters()).device
        for p in probes:
            self._input_gradient(model, p.x[:1].to(device), p.name)
        self._batch_test(model, mixed_batch(probes), device)

    def _input_gradient(self, model: nn.Module, x: torch.Tensor, source: str) -> None:
        x = x.clone().requires_grad_(True)
        # the tensors are taken at call time: the enhancer may add to a block's output dict later
        with block_calls(set_mode(model, True), lambda obj: list(tensors(obj))) as calls:
            out = model(x)
        inputs, outputs = calls
        grads = {}
        for key, producer in GRADIENT_OUTPUTS.items():
            if producer is None or getattr(model, producer) is not None:
                grads[key] = _input_grad_max(out[key], x)
        # Locating the cut costs a backward pass per block tensor: only when there is one.
        cut = _cutting_blocks(inputs, outputs, x) if 0.0 in grads.values() else []
        for key, g in grads.items():
            rec = self.gradients.setdefault(key, {"probes": 0, "zero": [], "no_path": [],
                                                  "cut_by": []})
            rec["probes"] += 1
            if g is None:
                rec["no_path"].append(source)
            elif g == 0.0:
                rec["zero"].append(source)
                rec["cut_by"] = sorted(set(rec["cut_by"]) | set(cut), key=BLOCKS.index)
            rec["max"] = max(rec.get("max", 0.0), g or 0.0)

    def _batch_test(self, model: nn.Module, batch: Probe, device: torch.device) -> None:
        x = batch.x.to(device)
        with torch.no_grad():
            for train in (False, True):
                set_mode(model, train)
                model.branches.reset()
                together = model(x)["enhanced"]
                decided = _decisions(model)
                for i in range(x.shape[0]):
                    model.branches.reset()
                    alone = model(x[i:i + 1])["enhanced"]
                    self.batch_diff = max(self.batch_diff,
                                          float((together[i:i + 1] - alone).abs().max()))
                    for name, fired in _decisions(model).items():
                        if decided.get(name) != fired:
                            where = f"image {i} {'train' if train else 'eval'}"
                            self.flips.setdefault(name, []).append(where)

    def on_train_end(self, model: nn.Module) -> None:
        self.training_counts = model.branches.snapshot()
