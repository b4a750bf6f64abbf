"""Global colour heads and the final saturation boost (§1.4.13, §1.4.14, §2.1).

Both heads are 3×3 colour matrices (+ bias) clamped in place by a forward pre-hook
(:mod:`remdinet.model.clamps`). The reference's never-enabled vibrance option of GlobalColourAffine
is left out (its parameter count, 12, matches that).
"""
from __future__ import annotations

import torch
from torch import nn

from ..colour import chroma_range, hsv_saturation, luma
from ..config import ClampConfig
from .branches import Decisions
from .clamps import Bound, ClampRecorder, install_clamps
from .precision import float32_conv2d


def colour_matrix(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``W x + b`` per pixel (W[i, c] maps input c to output i), in the parameters' precision even
    under autocast: the weights stay within a few hundredths of the identity, where bfloat16
    resolves only steps of 2^-7, and the result is the output image."""
    return float32_conv2d(x, weight, bias.view(-1))


class GlobalColourAffine(nn.Module):
    """``colour_head``: ``clamp01(W x + b)`` per pixel (W[i, c] maps input c to output i).

    ``grayworld`` reproduces the pre-fix training-only gray-world gains (fix 4b off).
    """

    def __init__(self, init_diag: float, weight_bound: Bound, bias_bound: Bound, grayworld: bool,
                 decisions: Decisions, recorder: ClampRecorder, name: str = "colour_head") -> None:
        super().__init__()
        self.weight = nn.Parameter((torch.eye(3) * init_diag).view(3, 3, 1, 1))
        self.bias = nn.Parameter(torch.zeros(3, 1, 1))
        self.grayworld = grayworld
        self.decisions = decisions
        install_clamps(self, name, {"weight": weight_bound, "bias": bias_bound}, recorder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.grayworld:
            d = self.decisions
            mu_c = x.mean(dim=(2, 3), keepdim=True)
            mu = d.mean(mu_c)
            gains = (mu / (mu_c + 1e-8)).clamp(0.95, 1.05)
            x = d.apply("affine_grayworld", mu > 0, lambda: (x * gains).clamp(0.0, 1.0), x)
        return colour_matrix(x, self.weight, self.bias).clamp(0.0, 1.0)


class EnhancedGlobalColorCorrection(nn.Module):
    """``color_enhancer``: affine → luma-anchored vibrance → per-channel gamma → clamp01."""

    def __init__(self, clamps: ClampConfig, identity_clamp: bool, recorder: ClampRecorder,
                 name: str = "color_enhancer") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.eye(3).view(3, 3, 1, 1))
        self.bias = nn.Parameter(torch.zeros(3, 1, 1))
        self.vibrance_factor = nn.Parameter(torch.tensor(float(clamps.enhancer_vibrance_init)))
        self.channel_gamma = nn.Parameter(torch.ones(3))
        weight_bound = (Bound.around_identity(clamps.enhancer_identity_delta) if identity_clamp
                        else Bound.flat(clamps.enhancer_weight_min, clamps.enhancer_weight_max))
        install_clamps(self, name, {
            "weight": weight_bound,
            "bias": Bound.flat(clamps.enhancer_bias_min, clamps.enhancer_bias_max),
            "vibrance_factor": Bound.flat(clamps.enhancer_vibrance_min, clamps.enhancer_vibrance_max),
            "channel_gamma": Bound.flat(clamps.enhancer_gamma_min, clamps.enhancer_gamma_max),
        }, recorder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = colour_matrix(x, self.weight, self.bias)
        y_luma = luma(y)
        k = 1.0 + (self.vibrance_factor - 1.0) * (1.0 - hsv_saturation(y))
        y = y_luma + (y - y_luma) * k
        y = y.clamp(1e-8, 1.0).pow(self.channel_gamma.view(1, 3, 1, 1))
        return y.clamp(0.0, 1.0)


def boost_beta(s: torch.Tensor) -> torch.Tensor:
    """Post-fix boost strength: 1 for s <= 0.075, falling linearly to 0 at s = 0.15."""
    return (2.0 * torch.relu(0.15 - s) / 0.15).clamp(0.0, 1.0)


def final_saturation_boost(x: torch.Tensor, smooth: bool, decisions: Decisions) -> torch.Tensor:
    """Chroma gain about the luma when the mean chroma range s is low (§1.4.13).

    ``smooth`` (fix 4d on): gain 1 + beta(s), applied when beta > 0.01. Otherwise the pre-fix rule:
    gain 2 when s < 0.2.
    """
    d = decisions
    s = d.mean(chroma_range(x))
    if smooth:
        beta = boost_beta(s)
        cond, gain = beta > 0.01, 1.0 + beta
    else:
        cond, gain = s < 0.2, 2.0

    def boosted() -> torch.Tensor:
        y = luma(x)
        return (y + gain * (x - y)).clamp(0.0, 1.0)

    return d.apply("final_saturation_boost", cond, boosted, x)
