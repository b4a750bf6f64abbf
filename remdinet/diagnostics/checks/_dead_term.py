"""``dead_term``: a weight the config sets > 0 whose term never appears in the stage's criterion.

A term that needs a target on a stage where no input had one is a note; a dead term governed by a
switch the run repairs (the perceptual weights file under its correction) is a note too.
"""
from __future__ import annotations

from remdinet.config import STAGE_WEIGHT_KEYS
from remdinet.losses import TERM_AFFINE_DECAY, TERMS, SimpleReconstructionLoss, StageLoss

from ..attribution import GOVERNED_BY, attribute
from ..gradients import TermMonitor
from ..report import Finding
from ._base import StageCheck

# Stage weight -> the term it weights in remdinet.losses.
WEIGHT_TERMS = {key: term.name for key in STAGE_WEIGHT_KEYS for term in TERMS
                if term.weight_key == key}
_TARGET_TERMS = {term.name for term in TERMS if term.needs_target}


class DeadTerm(StageCheck):
    name = "dead_term"
    observer = TermMonitor

    def _expected_terms(self, stage: int, criterion: StageLoss) -> dict[str, float]:
        weights = self.cfg.stage_weights(stage)
        out = {term: getattr(weights, key) for key, term in WEIGHT_TERMS.items()
               if getattr(weights, key) > 0}
        if not isinstance(criterion, SimpleReconstructionLoss) and self.cfg.loss.w_affine_decay > 0:
            out[TERM_AFFINE_DECAY] = self.cfg.loss.w_affine_decay
        return out

    def stage_findings(self, stage: int) -> list[Finding]:
        rec = self.observed.stages[stage]
        if rec.criterion is None:
            return []
        out = []
        for term, weight in self._expected_terms(stage, rec.criterion).items():
            if term in rec.terms:
                continue
            subject = f"s{stage}:{term}"
            simple = isinstance(rec.criterion, SimpleReconstructionLoss)
            if term in _TARGET_TERMS and rec.supervised == 0:
                out.append(Finding(self.name, subject, f"weight {weight:g}, never computed", "note",
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
            out.append(Finding(self.name, subject, f"weight {weight:g}, never computed", severity,
                               reason, by, switch, {"weight": weight}))
        return out
