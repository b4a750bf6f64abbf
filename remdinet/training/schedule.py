"""The three-stage epoch schedule of the reference trainer (§5.2, §5.4, §5.8), the stage-2 warm-up
ramp of the loss weights (§4.6) and the mixing of two stages' losses at a switch (§5.4)."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import STAGE_WEIGHT_KEYS, Config, StageWeights
from ..losses import LossOutput, RawValues


@dataclass(frozen=True)
class StageSchedule:
    """Stage 1 covers epochs [0, s1), stage 2 [s1, s2_end), stage 3 [s2_end, num_epochs)."""
    num_epochs: int
    s1: int
    s2_end: int

    @classmethod
    def from_config(cls, cfg: Config) -> "StageSchedule":
        t = cfg.training
        epochs = t.num_epochs
        # Python's round() rounds halves to even, exactly like the reference.
        s1 = max(1, int(round(t.stage1_frac * epochs)))
        s3 = max(1, int(round(t.stage3_frac * epochs)))
        return cls(epochs, s1, max(s1 + 1, epochs - s3))

    def stage_of(self, epoch: int) -> int:
        if epoch < self.s1:
            return 1
        return 2 if epoch < self.s2_end else 3

    def stage_start(self, stage: int) -> int:
        return {1: 0, 2: self.s1, 3: self.s2_end}[stage]

    def is_validation_epoch(self, epoch: int, cfg: Config) -> bool:
        t = cfg.training
        return (epoch % t.val_every == 0 or epoch < t.val_dense_epochs
                or epoch in (self.s1, self.s2_end, self.num_epochs - 1))


def mix_factor(stage: int, epochs_since_switch: int, cfg: Config) -> float:
    """Weight of the new stage's criterion; the old criterion gets ``1 - mix_factor`` (§5.4).

    Constant within an epoch and linear over the transition; 1.0 once the transition is over or
    in stage 1, which has no predecessor.
    """
    if stage == 1:
        return 1.0
    span = cfg.training.stage2_mix_epochs if stage == 2 else cfg.training.stage3_mix_epochs
    if epochs_since_switch >= span:
        return 1.0
    return epochs_since_switch / span


def perceptual_warmup(base: float, epochs_since_switch: int, switch_epoch: int,
                      schedule: StageSchedule, cfg: Config) -> float:
    """Stage-3 ``w_perceptual`` (§5.4): ``base * min(1, e / warm)``.

    ``warm = max(1, min(stage3_mix_epochs, s2_end - switch_epoch))`` is always 1 because the switch
    epoch *is* s2_end (§8.1.11); kept as written so the quirk stays visible.
    """
    warm = max(1, int(min(cfg.training.stage3_mix_epochs, schedule.s2_end - switch_epoch)))
    return base * min(1.0, epochs_since_switch / warm)


def ramp_factor(epoch_in_stage: int, warmup: int) -> float:
    """§4.6: ``0.5·(1 − cos(π·e/W))`` for e < W, else 1."""
    if warmup < 1 or epoch_in_stage < 0:
        raise ValueError(f"ramp: need warmup >= 1 and epoch_in_stage >= 0, got {warmup}, {epoch_in_stage}")
    if epoch_in_stage >= warmup:
        return 1.0
    return 0.5 * (1.0 - math.cos(math.pi * epoch_in_stage / warmup))


def ramp_weights(weights: StageWeights, keys: Sequence[str], epoch_in_stage: int,
                 warmup: int) -> StageWeights:
    """A copy of ``weights`` with each weight named in ``keys`` (``ramp.keys``) multiplied by
    :func:`ramp_factor`; the other weights keep their values."""
    unknown = [k for k in keys if k not in STAGE_WEIGHT_KEYS]
    if unknown:
        raise KeyError(f"ramp keys {unknown} are not stage weights; valid: {', '.join(STAGE_WEIGHT_KEYS)}")
    r = ramp_factor(epoch_in_stage, warmup)
    return dataclasses.replace(weights, **{k: getattr(weights, k) * r for k in keys})


def mix_losses(old: LossOutput | None, new: LossOutput, factor: float) -> LossOutput:
    """§5.4 transition mixing: ``total = (1 − f)·old.total + f·new.total``.

    Each total is already clamped by its own loss, as in the reference. ``terms`` hold every term of both
    losses scaled by its side's coefficient ((1 − f) for the old loss, f for the new one); a name present
    in both is the sum of the two contributions. So the terms still add up to the (unclamped) mixed
    total, and ``terms[name] / raw[name]`` is the effective coefficient of a term: for
    ``reconstruction`` (mean|E − T| in every stage) that is the L1 coefficient of §5.6. ``raw`` is the
    union of both losses' unweighted values; a shared name has the same formula on the same batch.

    ``old`` None (no earlier criterion) returns ``new`` unchanged. Whether to mix at all (e.g. not for
    an unpaired batch, §5.4) is the trainer's decision.
    """
    if old is None:
        return new
    if not 0.0 <= factor <= 1.0:
        raise ValueError(f"mix_losses: factor must be in [0, 1], got {factor}")
    terms = {name: factor * value for name, value in new.terms.items()}
    for name, value in old.terms.items():
        scaled = (1.0 - factor) * value
        terms[name] = terms[name] + scaled if name in terms else scaled
    raw = {**old.raw.tensors(), **new.raw.tensors()}
    total = (1.0 - factor) * old.total + factor * new.total
    return LossOutput(total, terms, RawValues(raw))
