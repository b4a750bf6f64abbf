"""Check 5: non-differentiable control flow.

* ``input_gradient``: for the first image of each probe alone (train pass, see :mod:`.modes`), the
  gradient of the sum of each image-shaped output w.r.t. the input image. An output that has no
  autograd path to the input (a constant) or whose gradient is exactly zero everywhere on some
  probe image is flagged; these outputs depend on their input by design, so zero means a clamp, a
  hard switch or a branch that never ran cut the path. The block that cuts it is found the same
  way: the first block in forward order whose outputs have a zero input-gradient while one of its
  inputs has a non-zero one. (``snr_map`` is left out: the learnable SNR estimator reads a
  detached input, as the reference does.)
* ``batch_dependence``: the mixed probe batch (one image of each kind) against each image alone,
  in eval mode and in the train pass. A per-image model gives each image the same output in any
  batch (up to float noise, :data:`BATCH_TOLERANCE`); a decision on a batch statistic does not.
* ``branch``: every declared branch point of the model (``model.branches``) is counted while the
  slice trains (how often it fired); in the batch test each branch's decision for the batch is
  compared with its decision for every image alone. A branch that decides differently for an image
  in the batch than for the image alone is flagged: a Python ``if`` on a batch scalar.
"""
from __future__ import annotations

import torch
from torch import nn

from remdinet.fixes import FixSet
from remdinet.model import BRANCH_NAMES

from .attribution import attribute
from .blocks import BLOCKS, block_calls
from .modes import set_mode, tensors
from .probes import Probe, mixed_batch
from .report import Finding

BATCH_TOLERANCE = 1e-4
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


class FlowMonitor:
    def __init__(self, fixset: FixSet) -> None:
        self.fixset = fixset
        self.gradients: dict[str, dict] = {}  # output -> {"probes", "zero", "no_path", "cut_by"}
        self.batch_diff = 0.0
        self.flips: dict[str, list[str]] = {}
        self.training_counts: dict[str, dict[str, int]] = {}

    # -- probes -------------------------------------------------------------------------------
    def on_probe(self, model: nn.Module, probes: list[Probe]) -> None:
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

    # -- findings -----------------------------------------------------------------------------
    def findings(self) -> list[Finding]:
        out = []
        for key, rec in self.gradients.items():
            value = f"max |dy/dx| {rec.get('max', 0.0):.1e} on {rec['probes']} probes"
            data = {k: v for k, v in rec.items()}
            producer = GRADIENT_OUTPUTS[key]
            if rec["no_path"]:
                by, switch = attribute(self.fixset, f"block:{producer or 'enhanced'}")
                detail = (f"no autograd path to the input (a constant) on {len(rec['no_path'])}/"
                          f"{rec['probes']} probes")
                if producer is not None and not rec["cut_by"]:
                    detail += f"; {producer} did not run"
                out.append(Finding("input_gradient", key, value, "flag", detail, by, switch, data))
            elif rec["zero"]:
                cut = rec["cut_by"]
                by, switch = attribute(self.fixset, f"block:{cut[0]}") if cut else (None, None)
                detail = (f"zero gradient w.r.t. the input on {len(rec['zero'])}/{rec['probes']} "
                          f"probes (e.g. {rec['zero'][0]}); "
                          + (f"cut by {', '.join(cut)}" if cut else "cut outside the blocks"))
                out.append(Finding("input_gradient", key, value, "flag", detail, by, switch, data))
            else:
                out.append(Finding("input_gradient", key, value, "ok", data=data))
        value = f"max |batched - alone| {self.batch_diff:.1e}"
        if self.batch_diff > BATCH_TOLERANCE:
            by, switch = attribute(self.fixset, "batch_dependence")
            flipped = ", ".join(self.flips) or "no branch flipped: a continuous batch statistic"
            out.append(Finding("batch_dependence", "enhanced", value, "flag",
                               f"an image's output depends on the other images in its batch "
                               f"({flipped})", by, switch, {"max_difference": self.batch_diff}))
        else:
            out.append(Finding("batch_dependence", "enhanced", value, "ok",
                               data={"max_difference": self.batch_diff}))
        for name in BRANCH_NAMES:
            counts = self.training_counts.get(name, {"fired": 0, "total": 0})
            flips = self.flips.get(name, [])
            if not counts["total"] and not flips:
                continue
            value = f"fired {counts['fired']}/{counts['total']} training forwards"
            data = {**counts, "flips": flips}
            if flips:
                by, switch = attribute(self.fixset, f"branch:{name}")
                out.append(Finding("branch", name, value, "flag",
                                   f"decided on a batch statistic: differs between the batch and "
                                   f"an image alone ({flips[0]}, {len(flips)} cases)", by, switch,
                                   data))
            else:
                out.append(Finding("branch", name, value, "ok",
                                   "a Python decision on a tensor value; it did not depend on the "
                                   "batch in the probes", data=data))
        return out
