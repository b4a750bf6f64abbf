"""Check 1: gradient reach of every loss term, dead terms, supervision weights and the loss clamp.

Every observation uses the trainer's own criteria (``trainer.criteria[stage]``, with the weights the
trainer wrote into them) on the live graph of a training batch, or a criterion built by
:func:`remdinet.losses.build_stage_loss` for a probe copy of the model, with the same weights.

Findings, per stage and term:

* ``gradient_reach``: the norm of the gradient of the *weighted* term w.r.t. the trainable
  parameters of each top-level block. Flagged when, on some input, the term has no autograd path
  at all (a constant although its weight is > 0), or has a non-zero value but a zero gradient while
  the enhanced image itself has one (the loss says "wrong" and gives no direction), or takes the
  same non-zero value (within :data:`CONSTANT_TOLERANCE`) on every input (it ignores the image).
  Zero gradients on inputs where the enhanced image has none (a saturated output) are not the
  term's defect: ``input_gradient`` reports them. A term that is exactly 0 with a path on every
  input is a satisfied hinge penalty (e.g. the curve penalty below its threshold) and is a note,
  not a defect: its gradient is zero because it sits at its minimum.
* ``dead_term``: a weight the config sets > 0 whose term never appears in the stage's criterion.
* ``supervision``: the stage criterion's fidelity weights (L1 reconstruction and SSIM) must not be
  scaled below their configured values; a ramp that scales them (to 0 on the first epoch of stage
  2 before fix ``ramp_keys``) is flagged. The mixed (transition) L1 coefficient is reported too.
* ``loss_clamp``: batches whose total hit a clamp bound, where its gradient is exactly zero.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from remdinet.colour import denormalize
from remdinet.config import STAGE_WEIGHT_KEYS, Config
from remdinet.fixes import FixSet
from remdinet.losses import (TERM_AFFINE_DECAY, TERM_RECONSTRUCTION, TERMS, LossOutput,
                             SimpleReconstructionLoss, StageLoss, build_stage_loss)

from .attribution import GOVERNED_BY, attribute
from .blocks import GradProbe
from .probes import Probe
from .report import Finding

CONSTANT_TOLERANCE = 1e-12
# Stage weight -> the term it weights in remdinet.losses.
WEIGHT_TERMS = {key: term.name for key in STAGE_WEIGHT_KEYS for term in TERMS
                if term.weight_key == key}
# The fidelity terms. The post-fix schedule ramps the auxiliary colour/exposure/edge terms in on
# purpose; ramping these removes the training signal itself at the stage switch.
SUPERVISION = ("w_reconstruction", "w_ssim")
_TARGET_TERMS = {term.name for term in TERMS if term.needs_target}


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


class TermMonitor:
    """Collects term observations per stage; ``reach_batches`` training batches per epoch get the
    per-term gradients (each costs one backward pass per term)."""

    def __init__(self, cfg: Config, fixset: FixSet, reach_batches: int) -> None:
        self.cfg = cfg
        self.fixset = fixset
        self.reach_batches = reach_batches
        self.stages: dict[int, StageRecord] = {}

    def on_train_batch(self, trainer, epoch: int, index: int, batch: dict, out: dict,
                       result: LossOutput, loss: torch.Tensor, probe: GradProbe) -> None:
        stage = trainer.stage
        rec = self.stages.setdefault(stage, StageRecord())
        criterion = trainer.criteria[stage]
        rec.criterion = criterion
        rec.batches += 1
        configured = self.cfg.stage_weights(stage)
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
        if result.terms and not math.isclose(float(loss.detach()), float(unclamped), rel_tol=1e-5,
                                             abs_tol=1e-7):
            rec.clamped += 1
        if index < self.reach_batches:
            device = out["enhanced"].device
            x = batch["input"].to(device)
            own = criterion(out, None if target is None else target.to(device), denormalize(x))
            _record_terms(rec, own, out["enhanced"], probe, f"epoch {epoch} batch {index}")

    def on_probe(self, trainer, stage: int, model, outputs: list[tuple[Probe, dict]]) -> None:
        """Terms of the stage's criterion (current weights) on the probe outputs of a model copy."""
        rec = self.stages.setdefault(stage, StageRecord())
        criterion = build_stage_loss(stage, self.cfg, self.fixset, model).to(trainer.device)
        criterion.weights = dataclasses.replace(trainer.criteria[stage].weights)
        if rec.criterion is None:
            rec.criterion = criterion
        probe = GradProbe(model)
        for p, out in outputs:
            target = None if p.target is None else p.target.to(trainer.device)
            rec.supervised += target is not None
            own = criterion(out, target, denormalize(p.x.to(trainer.device)))
            _record_terms(rec, own, out["enhanced"], probe, f"probe {p.name}")

    # -- findings ---------------------------------------------------------------------------
    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        for stage in sorted(self.stages):
            rec = self.stages[stage]
            out += [self._reach(stage, name, r) for name, r in rec.terms.items()]
            out += self._dead(stage, rec)
        out += self._supervision()
        out += self._clamp()
        return out

    def _reach(self, stage: int, name: str, r: TermRecord) -> Finding:
        subject = f"s{stage}:{name}"
        no_path = [s for s, n in zip(r.sources, r.norms) if n is None]
        totals = [None if n is None else math.sqrt(sum(v * v for v in n.values())) for n in r.norms]
        zero = [(s, m) for s, v, t, m in zip(r.sources, r.values, totals, r.output_moves)
                if t == 0.0 and v != 0.0]
        # Where the enhanced image itself has no gradient (a saturated output), every image term
        # is zero there: a model finding (input_gradient), not a defect of the term.
        stuck = [s for s, moves in zero if moves]
        saturated = [s for s, moves in zero if not moves]
        constant = len(r.values) >= 2 and max(r.values) - min(r.values) <= CONSTANT_TOLERANCE
        best = max((t for t in totals if t is not None), default=0.0)
        reached: dict[str, float] = {}
        for n in r.norms:
            for block, v in (n or {}).items():
                reached[block] = max(reached.get(block, 0.0), v)
        n_reached = sum(v > 0 for v in reached.values())
        value = f"|g| {best:.1e}, {n_reached}/{len(reached)} blocks"
        data = {"max_norm": best, "per_block_max": reached, "values": r.values,
                "sources": r.sources, "no_path": no_path, "zero_gradient": stuck,
                "zero_gradient_output_saturated": saturated}
        problems = []
        if no_path:
            problems.append(f"no gradient path (a constant) on {len(no_path)}/{len(r.sources)} "
                            f"inputs, e.g. {no_path[0]}")
        if stuck:
            problems.append(f"non-zero value but zero gradient on {len(stuck)}/{len(r.sources)} "
                            f"inputs, e.g. {stuck[0]}")
        if constant and r.values[0] != 0.0:
            problems.append(f"the same value {r.values[0]:.6g} on all {len(r.values)} inputs")
        if problems:
            by, switch = attribute(self.fixset, f"term:{name}")
            return Finding("gradient_reach", subject, value, "flag", "; ".join(problems), by, switch,
                           data)
        if saturated:
            return Finding("gradient_reach", subject, value, "ok",
                           f"zero gradient on {len(saturated)}/{len(r.sources)} inputs where the "
                           f"enhanced image itself has none (e.g. {saturated[0]}; see "
                           f"input_gradient)", data=data)
        if all(v == 0.0 for v in r.values):
            return Finding("gradient_reach", subject, value, "note",
                           f"0 on all {len(r.values)} inputs: a satisfied penalty (zero gradient "
                           f"at its minimum)", data=data)
        return Finding("gradient_reach", subject, value, "ok",
                       "reaches " + ", ".join(b for b, v in reached.items() if v > 0), data=data)

    def _expected_terms(self, stage: int, criterion: StageLoss) -> dict[str, float]:
        weights = self.cfg.stage_weights(stage)
        out = {term: getattr(weights, key) for key, term in WEIGHT_TERMS.items()
               if getattr(weights, key) > 0}
        if not isinstance(criterion, SimpleReconstructionLoss) and self.cfg.loss.w_affine_decay > 0:
            out[TERM_AFFINE_DECAY] = self.cfg.loss.w_affine_decay
        return out

    def _dead(self, stage: int, rec: StageRecord) -> list[Finding]:
        if rec.criterion is None:
            return []
        out = []
        for term, weight in self._expected_terms(stage, rec.criterion).items():
            if term in rec.terms:
                continue
            subject = f"s{stage}:{term}"
            simple = isinstance(rec.criterion, SimpleReconstructionLoss)
            if term in _TARGET_TERMS and rec.supervised == 0:
                out.append(Finding("dead_term", subject, f"weight {weight:g}, never computed", "note",
                                   "no input of this stage had a target"))
                continue
            if simple:
                mechanism = "dead:stage1"
                reason = ("stage 1 uses the fixed reconstruction loss (l1 + mse); its stage weights "
                          "are never read")
            else:
                mechanism = f"dead:{term}"
                reason = rec.criterion.inactive.get(term, "never computed in the slice")
            by, switch = attribute(self.fixset, mechanism)
            governed = bool(GOVERNED_BY.get(mechanism))
            severity = "note" if governed and by is None else "flag"
            out.append(Finding("dead_term", subject, f"weight {weight:g}, never computed", severity,
                               reason, by, switch, {"weight": weight}))
        return out

    def _supervision(self) -> list[Finding]:
        out = []
        for stage in sorted(self.stages):
            rec = self.stages[stage]
            if stage == 1 or not rec.weight_ratios:
                continue
            key, (ratio, e) = min(rec.weight_ratios.items(), key=lambda kv: kv[1][0])
            mixed = min(rec.l1_coefficients, default=float("nan"))
            data = {"min_ratio": {k: v[0] for k, v in rec.weight_ratios.items()},
                    "min_mixed_l1_coefficient": mixed}
            value = f"{key} x{ratio:.2f} (mixed L1 coef min {mixed:.3f})"
            if ratio < 1.0 - 1e-9:
                by, switch = attribute(self.fixset, "supervision")
                out.append(Finding("supervision", f"s{stage}", value, "flag",
                                   f"the stage-{stage} criterion scales {key} to x{ratio:.3f} of its "
                                   f"configured value at epoch {e} of the stage (a ramp on the "
                                   f"fidelity term)", by, switch, data))
            else:
                out.append(Finding("supervision", f"s{stage}", value, "ok",
                                   "fidelity weights at their configured values", data=data))
        return out

    def _clamp(self) -> list[Finding]:
        out = []
        for stage in sorted(self.stages):
            rec = self.stages[stage]
            value = f"{rec.clamped}/{rec.batches} batches clamped"
            data = {"clamped": rec.clamped, "batches": rec.batches}
            if rec.clamped:
                by, switch = attribute(self.fixset, "loss_clamp")
                out.append(Finding("loss_clamp", f"s{stage}", value, "flag",
                                   "the total loss hit a clamp bound, where its gradient is zero",
                                   by, switch, data))
            else:
                out.append(Finding("loss_clamp", f"s{stage}", value, "ok", data=data))
        return out
