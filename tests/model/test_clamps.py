"""Forward pre-hook clamps of the colour heads and the Appendix B weight values."""
from __future__ import annotations

import copy

import pytest
import torch
from tiny_setup import tiny_config

from remdinet.colour import normalize
from remdinet.model import Bound, ClampRecorder, build_model, install_clamps

EYE = torch.eye(3)
OFF = ~torch.eye(3, dtype=torch.bool)


def one_forward(model):
    x = normalize(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.2)
    with torch.no_grad():
        model(x)
    return model


def scramble(model, scale=10.0):
    """Push every clamped parameter far outside any range."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for block in (model.colour_head, model.color_enhancer):
            for p in block.parameters():
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * scale)


def w33(p):
    return p.detach().view(3, 3)


# (overrides, colour_head weight rule, enhancer weight rule, other enhancer ranges)
CASES = {
    "all_on": ({}, ("identity", 0.15), ("flat", 0.98, 1.02),
               {"bias": (-0.01, 0.01), "vibrance_factor": (0.98, 1.05), "channel_gamma": (0.95, 1.05)}),
    "all_off": ({"fixes.profile": "pre_fix"}, ("flat", 0.95, 1.05), ("flat", 0.9, 1.1),
                {"bias": (-0.03, 0.03), "vibrance_factor": (0.95, 1.15), "channel_gamma": (0.9, 1.1)}),
    "identity_correction": ({"fixes.corrections": ["enhancer_identity_clamp"]}, ("identity", 0.15),
                            ("identity", 0.05), {"bias": (-0.01, 0.01), "vibrance_factor": (0.98, 1.05),
                                                 "channel_gamma": (0.95, 1.05)}),
}


def assert_weight_rule(w, rule):
    if rule[0] == "flat":
        assert w.min() >= rule[1] - 1e-7 and w.max() <= rule[2] + 1e-7
        assert torch.isclose(w.min(), torch.tensor(rule[1])) and torch.isclose(w.max(), torch.tensor(rule[2]))
    else:
        assert ((w - EYE).abs() <= rule[1] + 1e-6).all()
        assert torch.isclose((w - EYE).abs().max(), torch.tensor(rule[1]))


@pytest.mark.parametrize("case", list(CASES))
def test_clamp_hooks_hold_each_range(case):
    overrides, head_rule, enh_rule, enh_ranges = CASES[case]
    model = build_model(tiny_config(overrides))
    scramble(model)
    one_forward(model)
    assert_weight_rule(w33(model.colour_head.weight), head_rule)
    assert model.colour_head.bias.abs().max().item() == pytest.approx(0.02)
    assert_weight_rule(w33(model.color_enhancer.weight), enh_rule)
    for name, (lo, hi) in enh_ranges.items():
        p = getattr(model.color_enhancer, name).detach()
        assert p.min() >= lo - 1e-7 and p.max() <= hi + 1e-7, name


def test_clamp_leaves_the_parameter_object_and_autograd_alone():
    model = build_model(tiny_config())
    param = model.color_enhancer.weight
    version = param._version
    one_forward(model)
    assert model.color_enhancer.weight is param and param._version == version
    assert param.grad is None


def test_prefix_colour_head_after_one_forward_appendix_b():
    """Without the trainer's diag(1.1) override the flat clamp lifts the off-diagonals to 0.95."""
    model = one_forward(build_model(tiny_config({"fixes.profile": "pre_fix",
                                                 "fixes.enable": ["mask_unfreeze.colour_head_init"]})))
    expected = torch.tensor([[1, .95, .95], [.95, 1, .95], [.95, .95, 1]])
    assert torch.allclose(w33(model.colour_head.weight), expected)


def test_prefix_colour_head_with_diag_override_appendix_b():
    model = one_forward(build_model(tiny_config({"fixes.profile": "pre_fix"})))
    w = w33(model.colour_head.weight)
    assert torch.allclose(w.diagonal(), torch.full((3,), 1.05))
    assert torch.allclose(w[OFF], torch.full((6,), 0.95))


@pytest.mark.parametrize("profile,off,vibrance", [("pre_fix", 0.9, 1.0), ("post_fix", 0.98, 1.05)])
def test_colour_enhancer_after_one_forward_appendix_b(profile, off, vibrance):
    enh = one_forward(build_model(tiny_config({"fixes.profile": profile}))).color_enhancer
    w = w33(enh.weight)
    assert torch.allclose(w.diagonal(), torch.ones(3))
    assert torch.allclose(w[OFF], torch.full((6,), off))
    assert enh.vibrance_factor.item() == pytest.approx(vibrance)


def test_postfix_colour_head_starts_at_identity():
    model = one_forward(build_model(tiny_config()))
    assert torch.equal(w33(model.colour_head.weight), EYE)


def test_clamp_report_averages_fraction_at_bound_since_reset():
    model = build_model(tiny_config())
    one_forward(model)
    report = model.clamp_report()
    assert report["color_enhancer.weight"] == pytest.approx(6 / 9)  # off-diagonals at 0.98
    assert report["color_enhancer.vibrance_factor"] == 1.0  # 1.2 clamped to 1.05
    assert report["colour_head.weight"] == 0.0
    with torch.no_grad():
        model.color_enhancer.weight.copy_(torch.full((3, 3, 1, 1), 1.5))
    one_forward(model)
    assert model.clamp_report()["color_enhancer.weight"] == pytest.approx((6 / 9 + 1.0) / 2)
    model.reset_clamp_report()
    assert model.clamp_report() == {}


def test_identity_bound_on_a_standalone_module():
    conv = torch.nn.Conv2d(3, 3, 1, bias=False)
    recorder = ClampRecorder()
    install_clamps(conv, "probe", {"weight": Bound.around_identity(0.1)}, recorder)
    with torch.no_grad():
        conv.weight.fill_(-5.0)
    conv(torch.rand(1, 3, 2, 2))
    expected = (EYE - 0.1).view(3, 3, 1, 1)
    assert torch.allclose(conv.weight.detach(), expected)
    assert recorder.report() == {"probe.weight": 1.0}


def test_install_clamps_rejects_an_unknown_parameter():
    with pytest.raises(AttributeError, match="gain"):
        install_clamps(torch.nn.Conv2d(3, 3, 1), "probe", {"gain": Bound.flat(0, 1)}, ClampRecorder())


def test_deepcopied_model_clamps_its_own_parameters():
    model = build_model(tiny_config())
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.color_enhancer.weight.fill_(7.0)
    one_forward(twin)
    assert twin.color_enhancer.weight.max().item() == pytest.approx(1.02)
    assert "color_enhancer.weight" in twin.clamp_report() and model.clamp_report() == {}
