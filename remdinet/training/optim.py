"""AdamW parameter groups and the LR schedulers of the reference trainer (§5.1)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, ReduceLROnPlateau

from ..config import Config

GROUPS = ("curve", "mask", "other")
_SUBSTRING = {"curve": "curve_estimator", "mask": "mask_predictor"}


def group_of(param_name: str) -> str:
    for group, sub in _SUBSTRING.items():
        if sub in param_name:
            return group
    return "other"


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.AdamW:
    """AdamW with the groups curve / mask / other, split by parameter-name substring.

    Every parameter goes into a group, frozen ones included: AdamW skips parameters whose grad is
    None, and a parameter that is unfrozen later (the mask predictor) must already be in its group.
    """
    params: dict[str, list[nn.Parameter]] = {g: [] for g in GROUPS}
    for name, p in model.named_parameters():
        params[group_of(name)].append(p)
    scale = cfg.optim.lr_scale
    lrs = {"curve": cfg.optim.lr_curve * scale, "mask": cfg.optim.lr_mask * scale,
           "other": cfg.optim.lr_other * scale}
    groups = [{"params": params[g], "lr": lrs[g], "name": g} for g in GROUPS if params[g]]
    # fused: one vectorised kernel for all parameters, about 4x faster than the default per-tensor
    # loop on CPU (which is what torch picks there), the same update up to float rounding
    return torch.optim.AdamW(groups, weight_decay=cfg.optim.weight_decay, fused=True)


def _group(optimizer: torch.optim.Optimizer, group: str) -> dict[str, Any]:
    for g in optimizer.param_groups:
        if g["name"] == group:
            return g
    raise KeyError(f"optimizer has no parameter group {group!r} (the model has no parameters "
                   f"whose name selects it)")


def group_lr(optimizer: torch.optim.Optimizer, group: str) -> float:
    return float(_group(optimizer, group)["lr"])


def set_group_lr(optimizer: torch.optim.Optimizer, group: str, lr: float) -> None:
    _group(optimizer, group)["lr"] = lr


def scale_group_lr(optimizer: torch.optim.Optimizer, group: str, factor: float) -> None:
    set_group_lr(optimizer, group, group_lr(optimizer, group) * factor)


def plateau_scheduler(optimizer: torch.optim.Optimizer, cfg: Config) -> ReduceLROnPlateau:
    """The initial scheduler: stepped with the raw validation PSNR (mode max)."""
    return ReduceLROnPlateau(optimizer, mode="max", factor=cfg.optim.plateau_factor,
                             patience=cfg.optim.plateau_patience)


def cosine_scheduler(optimizer: torch.optim.Optimizer, cfg: Config,
                     epoch: int) -> CosineAnnealingLR:
    """The scheduler built at every stage change; PyTorch's recursive form anneals from the
    *current* group LRs."""
    t_max = max(10, cfg.training.num_epochs - epoch)
    return CosineAnnealingLR(optimizer, T_max=t_max, eta_min=cfg.optim.eta_min)


def scheduler_state(scheduler: LRScheduler) -> dict[str, Any]:
    kind = "plateau" if isinstance(scheduler, ReduceLROnPlateau) else "cosine"
    return {"type": kind, "state": scheduler.state_dict()}


def restore_scheduler(optimizer: torch.optim.Optimizer, cfg: Config,
                      saved: dict[str, Any]) -> LRScheduler:
    """Rebuild a scheduler saved by :func:`scheduler_state` on an already restored optimizer."""
    if saved["type"] == "plateau":
        scheduler: LRScheduler = plateau_scheduler(optimizer, cfg)
    elif saved["type"] == "cosine":
        lrs = [g["lr"] for g in optimizer.param_groups]
        scheduler = CosineAnnealingLR(optimizer, T_max=saved["state"]["T_max"],
                                      eta_min=saved["state"]["eta_min"])
        # The constructor's initial step may touch the group LRs; the restored ones are the truth.
        for g, lr in zip(optimizer.param_groups, lrs):
            g["lr"] = lr
    else:
        raise ValueError(f"checkpoint scheduler type {saved['type']!r} is not 'plateau' or 'cosine'")
    scheduler.load_state_dict(saved["state"])
    return scheduler
