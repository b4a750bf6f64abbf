from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from tiny_setup import tiny_config
from remdinet import losses
from remdinet.colour import normalize
from remdinet.fixes import FixSet, fixes_of
from remdinet.losses import (DistractionAwareLoss, RawValues, SimpleReconstructionLoss,
                             build_stage_loss, color_diversity_loss, colour_consistency_loss,
                             curve_penalty, edge_loss, exposure_loss, legacy_color_diversity_loss,
                             reconstruction_l1, reconstruction_mse, sobel, ssim_loss)
from remdinet.metrics import ms_ssim, ssim
from remdinet.perceptual import VGG19Features, perceptual_distance
from remdinet.resolve import resolve

POST_FIX = resolve()
PRE_FIX = resolve({"fixes.profile": "pre_fix"})


def const(rgb, h=8, w=8, batch=1):
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(batch, 3, h, w).clone()


def colourful(h=8, w=8):
    """Saturated red/green/blue stripes: mean HSV-saturation 1 and large channel variance."""
    x = torch.zeros(1, 3, h, w)
    for c in range(3):
        x[:, c, :, c::3] = 1.0
    return x


class _StubModel(nn.Module):
    """Only what the losses read from a model: ``colour_head.weight``."""

    def __init__(self, weight: torch.Tensor | None):
        super().__init__()
        self.colour_head = None if weight is None else nn.Conv2d(3, 3, 1)
        if weight is not None:
            with torch.no_grad():
                self.colour_head.weight.copy_(weight)


# ------------------------------------------------------------------------------------------
# term formulas on hand-made tensors
# ------------------------------------------------------------------------------------------

def test_reconstruction_terms_are_mean_abs_and_mean_square_error():
    e, t = const([0.25] * 3), const([0.75] * 3)
    assert float(reconstruction_l1(e, t)) == pytest.approx(0.5)
    assert float(reconstruction_mse(e, t)) == pytest.approx(0.25)


def test_exposure_penalises_darkness_only():
    assert float(exposure_loss(const([0.2] * 3), 0.45)) == pytest.approx(0.5)
    assert float(exposure_loss(const([0.6] * 3), 0.45)) == 0.0


def test_curve_penalty_is_a_hinge_on_mean_absolute_curve():
    curves = torch.full((1, 24, 4, 4), -0.5)
    assert float(curve_penalty(curves, 0.2)) == pytest.approx(0.3)
    assert float(curve_penalty(curves * 0.1, 0.2)) == 0.0


def test_sobel_is_a_zero_padded_cross_correlation_with_the_specified_kernels():
    x = torch.rand(2, 3, 6, 7, dtype=torch.float64)
    kx = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64)
    gx, gy = sobel(x)
    arr = x.numpy()
    want_x = np.stack([[ndimage.correlate(arr[b, c], kx, mode="constant") for c in range(3)]
                       for b in range(2)])
    want_y = np.stack([[ndimage.correlate(arr[b, c], kx.T, mode="constant") for c in range(3)]
                       for b in range(2)])
    assert np.allclose(gx.numpy(), want_x) and np.allclose(gy.numpy(), want_y)
    ramp = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 3, 5, 5)
    assert float(sobel(ramp)[0][0, 0, 2, 2]) == -8.0  # left minus right


def test_edge_loss_combines_gradient_and_magnitude_differences():
    e, t = torch.rand(1, 3, 9, 9), torch.rand(1, 3, 9, 9)
    gxe, gye = sobel(e)
    gxt, gyt = sobel(t)
    mag = lambda gx, gy: torch.sqrt(gx ** 2 + gy ** 2 + 1e-4)  # noqa: E731
    want = ((gxe - gxt).abs().mean() + (gye - gyt).abs().mean()
            + 0.5 * (mag(gxe, gye) - mag(gxt, gyt)).abs().mean())
    assert float(edge_loss(e, t)) == pytest.approx(float(want))
    assert float(edge_loss(t, t)) == 0.0


def test_ssim_loss_uses_single_scale_up_to_160_px_and_ms_ssim_above():
    small_e, small_t = torch.rand(2, 3, 40, 40), torch.rand(2, 3, 40, 40)
    assert float(ssim_loss(small_e, small_t)) == pytest.approx(1 - float(ssim(small_e, small_t).mean()))
    big_t = torch.rand(1, 3, 161, 164)
    big_e = (big_t + 0.1 * torch.randn_like(big_t)).clamp(0, 1)
    assert float(ssim_loss(big_e, big_t)) == pytest.approx(1 - float(ms_ssim(big_e, big_t).mean()))
    assert float(ssim_loss(big_t, big_t)) == pytest.approx(0.0, abs=1e-5)


def test_colour_consistency_sums_chromaticity_saturation_and_half_hue_mse():
    e, ref = const([0.3, 0.3, 0.3]), const([0.2, 0.4, 0.4])
    chromaticity = ((1 / 3 - 0.2) ** 2 + 2 * (1 / 3 - 0.4) ** 2) / 3
    saturation = 0.5  # S(ref) = 0.2/0.4, S(grey) = 0: only lost saturation counts
    hue_part = 0.5 * (0.0 - 0.5) ** 2  # grey has hue 0; ref (max at G) has (B-R)/d + 2 = 3 -> 0.5
    got = float(colour_consistency_loss(e, ref, circular_hue=False))
    assert got == pytest.approx(chromaticity + saturation + hue_part, rel=1e-5)
    assert float(colour_consistency_loss(ref, ref, circular_hue=False)) == pytest.approx(0.0, abs=1e-7)


def test_circular_hue_wraps_red_across_zero_and_one():
    e, ref = const([1.0, 0.12, 0.0]), const([1.0, 0.0, 0.12])  # hues 0.02 and 0.98
    linear = float(colour_consistency_loss(e, ref, circular_hue=False))
    wrapped = float(colour_consistency_loss(e, ref, circular_hue=True))
    assert linear - wrapped == pytest.approx(0.5 * 0.96 ** 2 - 0.5 * 0.04 ** 2, rel=1e-4)


def test_color_diversity_after_matches_appendix_b():
    assert float(color_diversity_loss(const([0.5] * 3))) == pytest.approx(1.0)
    assert float(color_diversity_loss(const([1.0, 0.0, 0.0]))) == pytest.approx(4.54e-5, rel=1e-3)


def test_color_diversity_before_matches_appendix_b_with_pre_fix_threshold():
    tau = PRE_FIX.color_thresholds.target_saturation
    assert tau == 0.35
    assert float(legacy_color_diversity_loss(const([0.5] * 3), tau)) == pytest.approx(1.0)
    assert float(legacy_color_diversity_loss(const([0.51, 0.5, 0.5]), tau)) == pytest.approx(0.891, abs=5e-4)
    assert float(legacy_color_diversity_loss(const([1.0, 0.0, 0.0]), tau)) == 0.0


def test_color_diversity_before_constant_branches_carry_no_gradient():
    tau = 0.35
    vivid = colourful().requires_grad_(True)
    zero = legacy_color_diversity_loss(vivid, tau)
    assert float(zero) == 0.0 and not zero.requires_grad
    dim_but_saturated = const([0.1, 0.05, 0.05]).requires_grad_(True)  # s = 0.5 >= tau, var < 0.01
    half = legacy_color_diversity_loss(dim_but_saturated, tau)
    assert float(half) == 0.5 and not half.requires_grad
    greyish = const([0.51, 0.5, 0.5]).requires_grad_(True)
    assert legacy_color_diversity_loss(greyish, tau).requires_grad


def test_legacy_colour_diversity_under_all_off_sends_no_gradient_on_a_colourful_image():
    loss = build_stage_loss(2, PRE_FIX, FixSet.all_off())
    assert fixes_of(PRE_FIX) == FixSet.all_off()
    e = colourful(16, 16).requires_grad_(True)
    term = loss({"enhanced": e}, colourful(16, 16), colourful(16, 16)).terms["color_diversity"]
    assert float(term) == 0.0
    assert not term.requires_grad
    after = build_stage_loss(2, POST_FIX, FixSet.all_on())({"enhanced": e}, e.detach(), e.detach())
    (grad,) = torch.autograd.grad(after.terms["color_diversity"], e)
    assert grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------
# stage criteria
# ------------------------------------------------------------------------------------------

def test_stage1_is_the_simple_reconstruction_loss_by_default():
    loss = build_stage_loss(1, POST_FIX, FixSet.all_on())
    assert isinstance(loss, SimpleReconstructionLoss)
    e, t = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    out = loss({"enhanced": e}, t, t)
    want = 0.7 * (e - t).abs().mean() + 0.3 * ((e - t) ** 2).mean()
    assert float(out.total) == pytest.approx(float(want))
    assert set(out.terms) == {"reconstruction", "mse"}
    assert out.raw["reconstruction"] == pytest.approx(float((e - t).abs().mean()))


def test_stage1_without_target_is_a_constant_zero_without_gradient():
    e = torch.rand(1, 3, 8, 8, requires_grad=True)
    out = build_stage_loss(1, POST_FIX, FixSet.all_on())({"enhanced": e}, None, e.detach())
    assert float(out.total) == 0.0 and not out.total.requires_grad


def test_stage1_clamps_at_10():
    cfg = resolve({"loss.stage1_l1": 100.0})
    out = build_stage_loss(1, cfg, FixSet.all_on())({"enhanced": const([0.0] * 3)}, const([1.0] * 3), None)
    assert float(out.total) == 10.0


def test_stage1_weights_correction_uses_the_full_loss_with_stage1_weights():
    loss = build_stage_loss(1, POST_FIX, FixSet.all_on().with_corrections("stage1_weights"))
    assert isinstance(loss, DistractionAwareLoss)
    e, t = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    out = loss({"enhanced": e}, t, t)
    assert set(out.terms) == {"reconstruction", "ssim", "colour", "color_diversity"}  # exposure/edge 0
    assert float(out.terms["reconstruction"]) == pytest.approx(1.2 * float((e - t).abs().mean()))


def test_stage2_terms_follow_the_reference_order_and_weights():
    loss = build_stage_loss(2, POST_FIX, FixSet.all_on())
    e, t = torch.rand(2, 3, 16, 16) * 0.3, torch.rand(2, 3, 16, 16)
    mask = torch.rand(2, 1, 16, 16, requires_grad=True)
    curves = torch.rand(2, 24, 16, 16) - 0.5
    out = loss({"enhanced": e, "mask": mask, "curves": curves}, t, t)
    assert list(out.terms) == ["reconstruction", "exposure", "curve_penalty", "edge", "ssim", "colour",
                               "color_diversity", "mask_mean"]
    w = POST_FIX.stage2
    expected = {"reconstruction": w.w_reconstruction * reconstruction_l1(e, t),
                "exposure": w.w_exposure * exposure_loss(e, 0.45),
                "curve_penalty": 0.3 * curve_penalty(curves, 0.2),
                "edge": w.w_edge * edge_loss(e, t),
                "ssim": w.w_ssim * ssim_loss(e, t),
                "colour": w.w_color_consistency * colour_consistency_loss(e, t, False),
                "color_diversity": w.w_color_diversity * color_diversity_loss(e),
                "mask_mean": w.w_mask_mean * (mask.mean() - 0.5) ** 2}
    for name, value in expected.items():
        assert float(out.terms[name].detach()) == pytest.approx(float(value.detach()), rel=1e-5), name
    assert float(out.total.detach()) == pytest.approx(sum(float(v.detach()) for v in expected.values()),
                                                      rel=1e-5)
    assert out.raw["reconstruction"] == pytest.approx(float(reconstruction_l1(e, t)), rel=1e-6)


def test_mask_mean_needs_a_mask_that_requires_grad():
    loss = build_stage_loss(2, POST_FIX, FixSet.all_on())
    e = torch.rand(1, 3, 16, 16)
    out = loss({"enhanced": e, "mask": torch.rand(1, 1, 16, 16)}, e, e)
    assert "mask_mean" not in out.terms


def test_unsupervised_batch_uses_the_input_as_colour_reference_with_reduced_weight():
    loss = build_stage_loss(2, POST_FIX, FixSet.all_on())
    e, x = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    out = loss({"enhanced": e}, None, x)
    assert set(out.terms) == {"reconstruction", "exposure", "colour", "color_diversity"}
    assert float(out.terms["reconstruction"]) == 0.0
    want = POST_FIX.stage2.w_color_consistency * 0.2 * colour_consistency_loss(e, x, False)
    assert float(out.terms["colour"]) == pytest.approx(float(want))


def test_zero_weight_terms_are_not_computed(monkeypatch):
    def forbidden(*args):
        raise AssertionError("a zero-weight term was computed")

    monkeypatch.setattr(losses, "edge_loss", forbidden)
    monkeypatch.setattr(losses, "ssim_loss", forbidden)
    cfg = resolve({"stage2.w_edge": 0.0, "stage2.w_ssim": 0.0})
    e = torch.rand(1, 3, 16, 16)
    out = build_stage_loss(2, cfg, FixSet.all_on())({"enhanced": e}, e, e)
    assert "edge" not in out.terms and "ssim" not in out.terms


def test_circular_hue_correction_switches_the_colour_term():
    e, t = const([1.0, 0.12, 0.0], 16, 16), const([1.0, 0.0, 0.12], 16, 16)
    terms = {}
    for fixes in (FixSet.all_on(), FixSet.all_on().with_corrections("circular_hue")):
        terms[fixes.corrects("circular_hue")] = build_stage_loss(2, POST_FIX, fixes)(
            {"enhanced": e}, t, t).raw["colour"]
    assert terms[False] - terms[True] == pytest.approx(0.46, rel=1e-3)


def test_colour_diversity_formula_follows_the_fix_switch():
    grey = const([0.51, 0.5, 0.5], 16, 16)
    before = build_stage_loss(2, PRE_FIX, FixSet.all_off())({"enhanced": grey}, grey, grey)
    after = build_stage_loss(2, POST_FIX, FixSet.all_on())({"enhanced": grey}, grey, grey)
    assert before.raw["color_diversity"] == pytest.approx(0.891, abs=5e-4)
    assert after.raw["color_diversity"] == pytest.approx(float(color_diversity_loss(grey)))


def test_total_clamp_at_5_zeroes_the_gradient_and_no_loss_clamp_restores_it():
    cfg = resolve({"stage2.w_reconstruction": 100.0})
    t = torch.rand(1, 3, 16, 16)
    unclamped = FixSet.all_on().with_corrections("no_loss_clamp")
    for fixes, clamped in ((FixSet.all_on(), True), (unclamped, False)):
        e = (1 - t).requires_grad_(True)
        out = build_stage_loss(2, cfg, fixes)({"enhanced": e}, t, t)
        out.total.backward()
        if clamped:
            assert out.total.item() == 5.0 and e.grad.abs().sum().item() == 0.0
        else:
            assert out.total.item() > 5.0 and e.grad.abs().sum().item() > 0.0


def test_non_finite_totals_are_mapped_unless_no_loss_clamp():
    e, t = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    nan_out = {"enhanced": torch.full((1, 3, 16, 16), float("nan"))}
    inf_out = {"enhanced": e, "curves": torch.full((1, 24, 16, 16), float("inf"))}
    loss = build_stage_loss(2, POST_FIX, FixSet.all_on())
    assert float(loss(nan_out, t, t).total) == 0.0
    assert float(loss(inf_out, t, t).total) == 5.0
    raw_loss = build_stage_loss(2, POST_FIX, FixSet.all_on().with_corrections("no_loss_clamp"))
    assert math.isnan(float(raw_loss(nan_out, t, t).total))
    assert math.isinf(float(raw_loss(inf_out, t, t).total))


def test_stage_loss_weights_are_a_private_mutable_copy():
    cfg = resolve()
    loss = build_stage_loss(2, cfg, FixSet.all_on())
    loss.weights.w_edge = 0.0
    assert cfg.stage2.w_edge == 0.12
    e = torch.rand(1, 3, 16, 16)
    assert "edge" not in loss({"enhanced": e}, e, e).terms


def test_raw_values_are_floats_keyed_like_terms():
    e, t = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    out = build_stage_loss(3, POST_FIX, FixSet.all_on())({"enhanced": e}, t, t)
    assert isinstance(out.raw, RawValues)
    assert list(out.raw) == list(out.terms)
    assert all(isinstance(v, float) for v in out.raw.values())
    assert all(not v.requires_grad for v in out.raw.tensors().values())


# ------------------------------------------------------------------------------------------
# perceptual and affine decay (dead in the reference; corrections)
# ------------------------------------------------------------------------------------------

def test_perceptual_is_inactive_in_the_reference(caplog):
    with caplog.at_level(logging.WARNING, logger="remdinet.losses"):
        loss = build_stage_loss(3, POST_FIX, FixSet.all_on())
    e = torch.rand(1, 3, 16, 16)
    assert "perceptual" not in loss({"enhanced": e}, e, e).terms
    assert "reference" in loss.inactive["perceptual"]
    assert not caplog.records


def test_perceptual_correction_without_weights_is_off_and_says_so_once_per_process(caplog):
    losses._note_off.cache_clear()  # once per process: each test is a fresh "process"
    fixes = FixSet.all_on().with_corrections("perceptual_loss")
    with caplog.at_level(logging.WARNING, logger="remdinet.losses"):
        for _run in range(2):  # a second run (a study's next trial) builds its losses again
            losses_by_stage = [build_stage_loss(s, POST_FIX, fixes) for s in (1, 2, 3)]
    e = torch.rand(1, 3, 16, 16)
    assert "perceptual" not in losses_by_stage[2]({"enhanced": e}, e, e).terms
    assert all(loss.vgg is None for loss in losses_by_stage[1:])
    messages = [r.getMessage() for r in caplog.records if r.name == "remdinet.losses"]
    assert len(messages) == 1 and "perceptual" in messages[0] and "perceptual_weights" in messages[0]


def test_perceptual_correction_with_a_weights_file_adds_the_term(tmp_path):
    vgg = VGG19Features()
    torch.save(vgg.state_dict(), tmp_path / "vgg.pt")
    cfg = resolve({"loss.perceptual_weights": str(tmp_path / "vgg.pt")})
    loss = build_stage_loss(3, cfg, FixSet.all_on().with_corrections("perceptual_loss"))
    e = torch.rand(1, 3, 16, 16, requires_grad=True)
    t = torch.rand(1, 3, 16, 16, requires_grad=True)
    out = loss({"enhanced": e}, t, t.detach())
    assert out.terms["perceptual"].item() == pytest.approx(
        cfg.stage3.w_perceptual * float(perceptual_distance(vgg, e.detach(), t.detach())), rel=1e-5)
    out.terms["perceptual"].backward()
    assert e.grad.abs().sum() > 0 and t.grad is None
    assert "perceptual" not in loss({"enhanced": e}, None, t.detach()).terms


def test_affine_decay_is_absent_by_default():
    model = _StubModel(torch.eye(3).view(3, 3, 1, 1) + 0.1)
    loss = build_stage_loss(2, POST_FIX, FixSet.all_on(), model)
    e = torch.rand(1, 3, 16, 16)
    assert "affine_decay" not in loss({"enhanced": e}, e, e).terms
    assert "dead" in loss.inactive["affine_decay"]


def test_affine_decay_correction_decays_the_colour_head_towards_identity():
    model = _StubModel(torch.eye(3).view(3, 3, 1, 1) + 0.1)
    loss = build_stage_loss(2, POST_FIX, FixSet.all_on().with_corrections("affine_decay"), model)
    assert not list(loss.parameters())  # the model's block is referenced, not adopted
    e = torch.rand(1, 3, 16, 16)
    out = loss({"enhanced": e}, e, e)
    assert out.raw["affine_decay"] == pytest.approx(0.01)
    assert out.terms["affine_decay"].item() == pytest.approx(1e-4 * 0.01)
    out.total.backward()
    assert model.colour_head.weight.grad.abs().sum() > 0


def test_affine_decay_correction_needs_a_model_and_reports_a_missing_colour_head(caplog):
    losses._note_off.cache_clear()
    fixes = FixSet.all_on().with_corrections("affine_decay")
    with pytest.raises(ValueError, match="colour_head"):
        build_stage_loss(2, POST_FIX, fixes)
    with caplog.at_level(logging.WARNING, logger="remdinet.losses"):
        loss = build_stage_loss(2, POST_FIX, fixes, _StubModel(None))
    assert "colour_head" in loss.inactive["affine_decay"]
    assert any("affine_decay" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------
# with the real model
# ------------------------------------------------------------------------------------------

def _term_gradients(cfg, fixes, stage, tmp_path=None):
    """Per-term gradient mass reaching the model's parameters, for one forward pass."""
    from remdinet.model import build_model

    model = build_model(cfg).train()
    if fixes.corrects("affine_decay"):
        # At the identity initialisation mean((W - I)^2) has an exactly zero gradient by construction.
        with torch.no_grad():
            model.colour_head.weight.add_(0.05 * (1 - torch.eye(3)).view(3, 3, 1, 1))
    loss = build_stage_loss(stage, cfg, fixes, model)
    x01 = torch.rand(2, 3, 64, 64) * 0.2
    target = torch.rand(2, 3, 64, 64)
    out = loss(model(normalize(x01)), target, x01)
    params = [p for p in model.parameters() if p.requires_grad]
    mass = {}
    for name, term in out.terms.items():
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        mass[name] = sum(float(g.abs().sum()) for g in grads if g is not None)
    return mass


# Thresholds moved so the hinge terms (exposure, curve penalty) sit in their active region for a
# freshly initialised model; the question here is whether each term is connected to the model.
_ACTIVE_HINGES = {"loss.exposure_level": 1.0, "loss.curve_penalty_threshold": 0.0}


@pytest.mark.parametrize("stage", [2, 3])
def test_every_weighted_term_sends_gradient_into_the_model_under_all_on(stage):
    cfg = tiny_config(_ACTIVE_HINGES)
    assert fixes_of(cfg) == FixSet.all_on()
    mass = _term_gradients(cfg, FixSet.all_on(), stage)
    assert set(mass) == {"reconstruction", "exposure", "curve_penalty", "edge", "ssim", "colour",
                         "color_diversity", "mask_mean"}
    assert {name: m > 0 for name, m in mass.items()} == {name: True for name in mass}


def test_corrected_perceptual_and_affine_decay_terms_send_gradient_into_the_model(tmp_path):
    torch.save(VGG19Features().state_dict(), tmp_path / "vgg.pt")
    cfg = tiny_config({**_ACTIVE_HINGES, "loss.perceptual_weights": str(tmp_path / "vgg.pt")})
    fixes = FixSet.all_on().with_corrections("perceptual_loss", "affine_decay")
    mass = _term_gradients(cfg, fixes, 3)
    assert mass["perceptual"] > 0 and mass["affine_decay"] > 0
