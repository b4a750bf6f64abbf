"""The three-stage epoch schedule of the reference trainer (§5.2, §5.4, §5.8)."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import Config


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
