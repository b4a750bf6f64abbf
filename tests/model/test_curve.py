"""ImprovedCurveEstimator application formulas."""
from __future__ import annotations

import torch

from remdinet.colour import chroma_range
from remdinet.model import BranchRecorder, Decisions, ImprovedCurveEstimator


def make(mode, n=2, per_image=True):
    torch.manual_seed(0)
    return ImprovedCurveEstimator(n, 8, mode, Decisions(per_image, BranchRecorder()))


def test_zero_dce_formula_and_raw_curves():
    est = make("zero_dce")
    inp = torch.rand(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.5
    with torch.no_grad():
        out, curves = est(inp)
        a = est.curve_net(inp)
    assert torch.equal(curves, a)
    rgb = inp[:, :3]
    scale = 0.25 * (0.8 - rgb.mean(dim=(2, 3), keepdim=True)).clamp(0.1, 0.6)
    e = rgb
    for i in range(2):
        alpha = scale * a[:, 3 * i:3 * i + 3]
        e = (e + alpha * e * (1 - e)).clamp(0, 1)
    assert torch.allclose(out, e, atol=1e-6)  # colour check does not fire on these inputs


def test_curve_scale_is_bounded_by_0_15():
    est = make("zero_dce", n=1)
    with torch.no_grad():
        est.curve_net[-2].bias.fill_(100.0)  # tanh -> 1
    inp = torch.full((1, 4, 4, 4), 0.5)
    out, _ = est(inp)
    # b = 0.5 -> f = 0.3, s = 0.075: one step 0.5 + 0.075 * 0.25
    assert torch.allclose(out, torch.full((1, 3, 4, 4), 0.5 + 0.075 * 0.25))


def test_colour_check_pulls_back_towards_the_input_when_chroma_collapses():
    est = make("zero_dce", n=1, per_image=False)
    with torch.no_grad():
        est.curve_net[-2].bias.fill_(100.0)
    inp = torch.cat([torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1).expand(1, 3, 4, 4),
                     torch.zeros(1, 1, 4, 4)], dim=1)
    out, _ = est(inp)
    assert est.decisions.branches.snapshot()["curve_colour_check"]["total"] == 1
    assert chroma_range(out).mean() > 0


def test_additive_mode_pulls_towards_one():
    est = make("additive", n=1)
    with torch.no_grad():
        est.curve_net[-2].bias.fill_(100.0)
    inp = torch.cat([torch.full((1, 3, 4, 4), 0.5), torch.full((1, 1, 4, 4), 0.3)], dim=1)
    out, _ = est(inp)
    # b = 0.5 -> s = 0.075; additive step E + 0.35 * s * (1 - E), not Zero-DCE's s * E * (1 - E)
    assert torch.allclose(out, torch.full((1, 3, 4, 4), 0.5 + 0.35 * 0.075 * 0.5))
