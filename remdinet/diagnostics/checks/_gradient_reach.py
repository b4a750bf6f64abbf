"""``gradient_reach``: whether each loss term, per stage, sends the model a gradient.

The norm of the gradient of the *weighted* term w.r.t. the trainable parameters of each top-level
block (:class:`~..gradients.TermMonitor`). Flagged when, on some input, the term has no autograd path
at all (a constant although its weight is > 0), or has a non-zero value but a zero gradient while
the enhanced image itself has one (the loss says "wrong" and gives no direction), or takes the
same non-zero value (within :data:`CONSTANT_TOLERANCE`) on every input (it ignores the image).
Zero gradients on inputs where the enhanced image has none (a saturated output) are not the
term's defect: ``input_gradient`` reports them. A term that is exactly 0 with a path on every
input is a satisfied hinge penalty (e.g. the curve penalty below its threshold) and is a note,
not a defect: its gradient is zero because it sits at its minimum.
"""
from __future__ import annotations

import math

from ..attribution import attribute
from ..gradients import TermMonitor, TermRecord
from ..report import Finding
from ._base import StageCheck

CONSTANT_TOLERANCE = 1e-12


class GradientReach(StageCheck):
    name = "gradient_reach"
    observer = TermMonitor

    def stage_findings(self, stage: int) -> list[Finding]:
        return [self._reach(stage, name, r)
                for name, r in self.observed.stages[stage].terms.items()]

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
        reached = _per_block_max(r.norms)
        n_reached = sum(v > 0 for v in reached.values())
        value = f"|g| {best:.1e}, {n_reached}/{len(reached)} blocks"
        data = {"max_norm": best, "per_block_max": reached, "values": r.values,
                "sources": r.sources, "no_path": no_path, "zero_gradient": stuck,
                "zero_gradient_output_saturated": saturated}
        problems = _problems(r, no_path, stuck, constant)
        if problems:
            by, switch = attribute(self.fixset, f"term:{name}")
            return Finding(self.name, subject, value, "flag", "; ".join(problems), by, switch, data)
        if saturated:
            return Finding(self.name, subject, value, "ok",
                           f"zero gradient on {len(saturated)}/{len(r.sources)} inputs where the "
                           f"enhanced image itself has none (e.g. {saturated[0]}; see "
                           f"input_gradient)", data=data)
        if all(v == 0.0 for v in r.values):
            return Finding(self.name, subject, value, "note",
                           f"0 on all {len(r.values)} inputs: a satisfied penalty (zero gradient "
                           f"at its minimum)", data=data)
        return Finding(self.name, subject, value, "ok",
                       "reaches " + ", ".join(b for b, v in reached.items() if v > 0), data=data)


def _per_block_max(norms: list[dict[str, float] | None]) -> dict[str, float]:
    """The largest gradient norm each block got over the inputs (blocks seen on any input)."""
    reached: dict[str, float] = {}
    for n in norms:
        for block, v in (n or {}).items():
            reached[block] = max(reached.get(block, 0.0), v)
    return reached


def _problems(r: TermRecord, no_path: list[str], stuck: list[str], constant: bool) -> list[str]:
    problems = []
    if no_path:
        problems.append(f"no gradient path (a constant) on {len(no_path)}/{len(r.sources)} "
                        f"inputs, e.g. {no_path[0]}")
    if stuck:
        problems.append(f"non-zero value but zero gradient on {len(stuck)}/{len(r.sources)} "
                        f"inputs, e.g. {stuck[0]}")
    if constant and r.values[0] != 0.0:
        problems.append(f"the same value {r.values[0]:.6g} on all {len(r.values)} inputs")
    return problems
