"""Model selection and early stopping on validation epochs (§5.8).

Three independent trackers, as in the reference (the best raw PSNR/SSIM of the run are read from the
history by the trainer):

* ``best_s1_psnr`` - raw PSNR, decides ``best_s1.pth`` while in stage 1 and below ``save_best_stage``;
* ``best_model_score`` - the stage score (see :func:`stage_score`) from ``save_best_stage`` on,
  decides ``best_model.pth``;
* ``best_score`` / ``patience`` - the early-stopping monitor. It carries across stages unless the
  ``reset_best_per_stage`` correction is on (§8.1.10).

The reference's stage-3 score uses MS-SSIM; it is only defined for images whose smaller side is
> 160, so on smaller validation images the (Gaussian) SSIM takes its place (``ssim_for_score``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..config import Config


def saturation_penalty(val_saturation: float, cfg: Config) -> float:
    ct = cfg.color_thresholds
    return max(0.0, (ct.min_saturation - val_saturation) * ct.saturation_penalty_factor)


def stage_score(psnr: float, ssim: float, penalty: float, cfg: Config) -> float:
    t = cfg.training
    if t.monitor_stage3 == "psnr":
        return psnr - penalty
    if t.monitor_stage3 == "ssim":
        return 20.0 * ssim - penalty
    return t.s3_psnr_weight * psnr + t.s3_ssim_weight * (20.0 * ssim) - penalty


@dataclass
class Decision:
    save_best_s1: bool
    save_best_model: bool
    improved: bool
    stop: bool
    monitor: float
    penalty: float


@dataclass
class Selection:
    best_s1_psnr: float = -math.inf
    best_model_score: float = -math.inf
    best_score: float = -math.inf
    patience: int = 0

    def new_stage(self, reset_best: bool) -> None:
        self.patience = 0
        if reset_best:
            self.best_score = -math.inf

    def update(self, stage: int, psnr: float, ssim_for_score: float, saturation: float,
               cfg: Config) -> Decision:
        """Record one validation event; comparisons with NaN are False, as in the reference."""
        penalty = saturation_penalty(saturation, cfg)
        save_s1 = save_model = False
        if stage < cfg.training.save_best_stage:
            monitor = psnr - penalty
            if stage == 1 and psnr > self.best_s1_psnr:
                self.best_s1_psnr = psnr
                save_s1 = True
        else:
            monitor = stage_score(psnr, ssim_for_score, penalty, cfg)
            if monitor > self.best_model_score:
                self.best_model_score = monitor
                save_model = True
        es = cfg.early_stopping
        min_delta = getattr(es, f"stage{stage}_min_delta")
        improved = monitor > self.best_score + min_delta
        if improved:
            self.best_score = monitor
            self.patience = 0
        else:
            self.patience += 1
        stop = es.enabled and self.patience >= getattr(es, f"stage{stage}_patience")
        return Decision(save_s1, save_model, improved, stop, monitor, penalty)

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            if not hasattr(self, key):
                raise KeyError(f"checkpoint selection state has unknown key {key!r}")
            setattr(self, key, value)
