"""Curve branch: ``ImprovedCurveEstimator`` (§1.4.11).

Two application formulas are implemented:

* ``"zero_dce"`` (post-fix): on RGB, ``E <- clamp01(E + a*E*(1-E))`` for n iterations, followed by
  the colour-loss check;
* ``"additive"`` (pre-fix *intended* formula, ``model.before_curve_mode = "intended"``): the 4-channel
  input (RGB + SNR map) gets a per-channel scale computed over all 4 channels and an additive pull
  ``E <- clamp01(E + 0.35*a*(1-E))``. The curve net has only 3 channels per iteration, so the 4th
  (SNR) channel receives no curve (a = 0) but stays in the statistics of the colour-loss check; the
  RGB part is returned.

The pre-fix *actual* behaviour (identity, no curve net call) lives in the enhancer.
"""
from __future__ import annotations

import torch
from torch import nn

from ..colour import chroma_range
from .branches import Decisions
from .precision import Float32Conv2d

MODES = ("zero_dce", "additive")


class ImprovedCurveEstimator(nn.Module):
    """``forward(inp)`` with ``inp`` = concat(x01, snr_map) returns ``(enhanced RGB, raw curves A)``;
    A is B×3n×H×W in (-1, 1), iteration i using channels 3i..3i+2."""

    def __init__(self, num_iterations: int, hidden: int, mode: str, decisions: Decisions) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"curve mode must be one of {MODES}, got {mode!r}")
        self.n = num_iterations
        self.mode = mode
        self.decisions = decisions
        h2 = max(hidden // 2, 1)
        last = Float32Conv2d(h2, 3 * num_iterations, 3, padding=1)
        with torch.no_grad():
            last.weight.mul_(0.02)
            last.bias.zero_()
        self.curve_net = nn.Sequential(
            nn.Conv2d(4, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, h2, 3, padding=1), nn.ReLU(inplace=True),
            last, nn.Tanh())

    def forward(self, inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        curves = self.curve_net(inp)
        b, _, h, w = inp.shape
        additive = self.mode == "additive"
        # The colour check compares against everything the formula was applied to: RGB, or all four
        # channels in the pre-fix intended form.
        ref = inp if additive else inp[:, :3]
        scale = 0.25 * (0.8 - ref.mean(dim=(2, 3), keepdim=True)).clamp(0.1, 0.6)
        alpha = curves.view(b, self.n, 3, h, w) * scale[:, None, :3]
        e = inp[:, :3]
        # unbind, not alpha[:, i]: the backward of n indexing ops would build n zero-filled copies of
        # the whole alpha tensor; unbind's backward stacks the n gradients once.
        for a in alpha.unbind(1):
            e = (torch.addcmul(e, 0.35 * a, 1.0 - e) if additive
                 else torch.addcmul(e, a * e, 1.0 - e)).clamp(0.0, 1.0)
        out = torch.cat([e, inp[:, 3:]], dim=1) if additive else e

        d = self.decisions
        so = d.mean(chroma_range(ref))
        se = d.mean(chroma_range(out))
        colour_loss = ((so - se) / (so + 1e-8)).clamp(0.0, 1.0)
        out = d.apply("curve_colour_check", colour_loss > 0.3,
                      lambda: (0.7 * out + 0.3 * ref * (d.mean(out) / (d.mean(ref) + 1e-8))
                               ).clamp(0.0, 1.0), out)
        return out[:, :3], curves
