"""Colour heads: final saturation boost table, gray-world step, enhancer forward."""
from __future__ import annotations

import pytest
import torch
from tiny_setup import tiny_config

from remdinet.colour import chroma_range, luma, normalize
from remdinet.config import ClampConfig
from remdinet.model import (Bound, BranchRecorder, ClampRecorder, Decisions,
                            EnhancedGlobalColorCorrection, GlobalColourAffine, boost_beta, build_model,
                            final_saturation_boost)


def constant_chroma_image(s):
    """Every pixel has chroma range exactly s, around 0.5."""
    px = torch.tensor([0.5 + s / 2, 0.5 - s / 2, 0.5]).view(1, 3, 1, 1)
    return px.expand(2, 3, 4, 4).clone()


@pytest.mark.parametrize("s,beta,gain", [(0.05, 1.0, 2.0), (0.10, 0.6667, 1.6667),
                                         (0.149, 0.01333, 1.01333), (0.1493, 0.0, 1.0),
                                         (0.3, 0.0, 1.0)])
def test_postfix_final_boost_table(s, beta, gain):
    if beta:
        assert boost_beta(torch.tensor(s)).item() == pytest.approx(beta, abs=2e-4)
    rec = BranchRecorder()
    x = constant_chroma_image(s)
    out = final_saturation_boost(x, True, Decisions(False, rec))
    measured = (chroma_range(out) / chroma_range(x)).mean().item()
    assert measured == pytest.approx(gain, abs=2e-4)
    assert rec.snapshot()["final_saturation_boost"] == {"fired": int(gain > 1), "total": 1}
    assert torch.allclose(luma(out), luma(x), atol=1e-6)  # chroma scaled about the luma


def test_boost_beta_skip_threshold_is_0_14925():
    assert boost_beta(torch.tensor(0.1492)) > 0.01
    assert boost_beta(torch.tensor(0.1493)) <= 0.01


@pytest.mark.parametrize("s,gain", [(0.1, 2.0), (0.19, 2.0), (0.21, 1.0)])
def test_prefix_final_boost_doubles_chroma_below_0_2(s, gain):
    x = constant_chroma_image(s)
    out = final_saturation_boost(x, False, Decisions(False, BranchRecorder()))
    assert (chroma_range(out) / chroma_range(x)).mean().item() == pytest.approx(gain, abs=1e-4)


def test_per_image_boost_decides_per_image():
    x = torch.cat([constant_chroma_image(0.05)[:1], constant_chroma_image(0.3)[:1]])
    out = final_saturation_boost(x, True, Decisions(True, BranchRecorder()))
    gains = (chroma_range(out) / chroma_range(x)).mean(dim=(1, 2, 3))
    assert torch.allclose(gains, torch.tensor([2.0, 1.0]), atol=1e-4)


def _affine(grayworld):
    return GlobalColourAffine(1.0, Bound.around_identity(0.15), Bound.flat(-0.02, 0.02), grayworld,
                              Decisions(False, BranchRecorder()), ClampRecorder())


def test_prefix_grayworld_runs_in_training_only():
    head = _affine(grayworld=True)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * torch.tensor(
        [1.0, 0.5, 0.2]).view(1, 3, 1, 1)
    with torch.no_grad():
        train_out = head.train()(x)
        eval_out = head.eval()(x)
    assert torch.allclose(eval_out, x)  # identity weight
    mu_c = x.mean(dim=(2, 3), keepdim=True)
    gains = (mu_c.mean() / mu_c).clamp(0.95, 1.05)
    assert torch.allclose(train_out, (x * gains).clamp(0, 1), atol=1e-6)
    assert head.decisions.branches.snapshot()["affine_grayworld"] == {"fired": 1, "total": 1}


def test_postfix_colour_head_is_identical_in_train_and_eval():
    head = _affine(grayworld=False)
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(head.train()(x), head.eval()(x))


def test_identity_enhancer_is_identity_at_neutral_parameters():
    clamps = ClampConfig(enhancer_vibrance_init=1.0)
    enh = EnhancedGlobalColorCorrection(clamps, identity_clamp=True, recorder=ClampRecorder())
    x = torch.rand(1, 3, 8, 8) * 0.9 + 0.05
    with torch.no_grad():
        assert torch.allclose(enh(x), x, atol=1e-6)


def test_postfix_flat_enhancer_clamp_makes_outputs_grey():
    """§2.1: off-diagonals forced to 0.98, every channel becomes about R+G+B."""
    model = build_model(tiny_config()).eval()
    x01 = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.2
    with torch.no_grad():
        model(normalize(x01))
        y = model.color_enhancer(x01)
    assert (chroma_range(y) / y.amax(dim=1, keepdim=True)).mean() < 0.03
    assert y.mean() / x01.mean() == pytest.approx(3.0, rel=0.05)
