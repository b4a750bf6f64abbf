"""Loss-term observations per stage, for the checks ``gradient_reach``, ``dead_term``,
``supervision`` and ``loss_clamp`` (:mod:`.checks`).

Every observation uses the trainer's own criteria (``trainer.criteria[stage]``, with the weights the
trainer wrote into them) on the live graph of a training batch, or a criterion built by
:func:`remdinet.losses.build_stage_loss` for a probe copy of the model, with the same weights: the
value, and the norm of the gradient of the *weighted* term w.r.t. the trainable parameters of each
top-level block, of every term on every input; the scale of the fidelity weights against their
configured values; and the batches whose total the clamp changed.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from remdinet.colour import denormalize
from remdinet.losses import TERM_RECONSTRUCTION, LossOutput, StageLoss, build_stage_loss

from .blocks import GradProbe
from .observer import Observer, Step
from .probes import Probe

# The fidelity terms. The post-fix schedule ramps the auxiliary colour/exposure/edge terms in on
# purpose; ramping these removes the training signal itself at the stage switch.
SUPERVISION = ("w_reconstruction", "w_ssim")
# Training batches per epoch whose terms get per-term gradients (each costs one backward pass per
# term); the probes add more inputs at every stage end.
REACH_BATCHES = 1


@dataclass
class TermRecord:
    values: list[float] = field(default_factory=list)
    norms: list[dict[str, float] | None] = field(default_factory=list)  # None: no autograd path
    sources: list[str] = field(default_factory=list)
    output_moves: list[bool] = field(default_factory=list)  # the enhanced image has a gradient


@dataclass
class StageRecord:
    terms: dict[str, TermRecord] = field(default_factory=dict)
    batches: int = 0
    supervised: int = 0
    criterion: StageLoss | None = None
    weight_ratios: dict[str, tuple[float, int]] = field(default_factory=dict)  # key -> (min, epoch)
    l1_coefficients: list[float] = field(default_factory=list)
    clamped: int = 0


def _record_terms(rec: StageRecord, output: LossOutput, enhanced: torch.Tensor, probe: GradProbe,
                  source: str) -> None:
    image = probe.norms(enhanced.float().sum())
    moves = image is not None and any(v > 0 for v in image.values())
    for name, term in output.terms.items():
        r = rec.terms.setdefault(name, TermRecord())
        r.values.append(float(output.raw[name]))
        r.norms.append(probe.norms(term))
        r.sources.append(source)
        r.output_moves.append(moves)


class TermMonitor(Observer):
    """Collects term observations per stage; :data:`REACH_BATCHES` training batches per epoch get
    the per-term gradients."""

    def __init__(self) -> None:
        self.stages: dict[int, StageRecord] = {}

    def on_train_batch(self, trainer, step: Step) -> None:
        epoch, index, batch, out, result = step.epoch, step.index, step.batch, step.out, step.result
        stage = trainer.stage
        rec = self.stages.setdefault(stage, StageRecord())
        criterion = trainer.criteria[stage]
        rec.criterion = criterion
        rec.batches += 1
        configured = trainer.cfg.stage_weights(stage)
        for key in SUPERVISION:
            base = getattr(configured, key)
            if base > 0:
                ratio = getattr(criterion.weights, key) / base
                if key not in rec.weight_ratios or ratio < rec.weight_ratios[key][0]:
                    rec.weight_ratios[key] = (ratio, epoch - trainer.switch_epoch)
        target = batch["target"]
        if target is not None:
            rec.supervised += 1
            raw_l1 = result.raw.get(TERM_RECONSTRUCTION)
            if raw_l1:
                rec.l1_coefficients.append(float(result.terms[TERM_RECONSTRUCTION].detach())
                                           / raw_l1)
        unclamped = sum(t.detach().float() for t in result.terms.values())
        if result.terms and not math.isclose(float(step.loss.detach()), float(unclamped),
                                             rel_tol=1e-5, abs_tol=1e-7):
            rec.clamped += 1
        if index < REACH_BATCHES:
            device = out["enhanced"].device
            x = batch["input"].to(device)
            own = criterion(out, None if target is None else target.to(device), denormalize(x))
            _record_terms(rec, own, out["enhanced"], step.grads, f"epoch {epoch} batch {index}")

    def on_stage_probe(self, trainer, stage: int, model, outputs: list[tuple[Probe, dict]]) -> None:
        """Terms of the stage's criterion (current weights) on the probe outputs of a model copy."""
        rec = self.stages.setdefault(stage, StageRecord())
        criterion = build_stage_loss(stage, trainer.cfg, trainer.fixes, model).to(trainer.device)
        criterion.weights = dataclasses.replace(trainer.criteria[stage].weights)
        if rec.criterion is None:
            rec.criterion = criterion
        probe = GradProbe(model)
        for p, out in outputs:
            target = None if p.target is None else p.target.to(trainer.device)
            rec.supervised += target is not None
            own = criterion(out, target, denormalize(p.x.to(trainer.device)))
            _record_terms(rec, own, out["enhanced"], probe, f"probe {p.name}")
