"""The performance rewrites of the model compute what the straightforward formulas compute.

Each oracle below is the plain form of one block (module calls in order, a concatenation, an indexing
loop), written here independently of the model code. The rewrites must match it in value and in every
gradient, block by block and for the whole model (channels_last on, rewrites in) against the plain
model (channels_last off, oracles patched in), including a training step.
"""
from __future__ import annotations

import copy
import types

import pytest
import torch
import torch.nn.functional as F
from tiny_setup import tiny_config

from remdinet.colour import chroma_range, denormalize, normalize
from remdinet.fixes import fixes_of
from remdinet.losses import build_stage_loss
from remdinet.model import build_model
from remdinet.model.backbone import DepthwiseConv2d
from remdinet.model.curve import ImprovedCurveEstimator
from remdinet.model.precision import Float32Conv2d
from remdinet.model.semantic import TransformerDecoder
from remdinet.model.snr import SNRAwareDistractionModule
from remdinet.training.optim import build_optimizer


# -- oracles: the straightforward forms ----------------------------------------------------------

def plain_heads(decoder: TransformerDecoder, u: torch.Tensor):
    return decoder.luminance_head(u), decoder.rgb_residual_head(u)


def plain_snr_forward(module: SNRAwareDistractionModule, x, learned=None):
    feats = module.encoder(x)
    snr_map = module.handcrafted_snr(x) if learned is None else learned
    c = module.content_branch(feats)
    c = c * module.spatial_attention(c)
    content_map = module.content_output(c)
    distraction = module.fusion_net(torch.cat([feats, snr_map, content_map], dim=1))
    return distraction, snr_map, content_map


def plain_curve_forward(module: ImprovedCurveEstimator, inp):
    curves = module.curve_net(inp)
    b, _, h, w = inp.shape
    additive = module.mode == "additive"
    ref = inp if additive else inp[:, :3]
    scale = 0.25 * (0.8 - ref.mean(dim=(2, 3), keepdim=True)).clamp(0.1, 0.6)
    alpha = curves.view(b, module.n, 3, h, w) * scale[:, None, :3]
    e = inp[:, :3]
    for i in range(module.n):
        a = alpha[:, i]
        e = (e + 0.35 * a * (1.0 - e) if additive else e + a * e * (1.0 - e)).clamp(0.0, 1.0)
    out = torch.cat([e, inp[:, 3:]], dim=1) if additive else e
    d = module.decisions
    so, se = d.mean(chroma_range(ref)), d.mean(chroma_range(out))
    colour_loss = ((so - se) / (so + 1e-8)).clamp(0.0, 1.0)
    out = d.apply("curve_colour_check", colour_loss > 0.3,
                  lambda: (0.7 * out + 0.3 * ref * (d.mean(out) / (d.mean(ref) + 1e-8))).clamp(0.0, 1.0),
                  out)
    return out[:, :3], curves


def make_plain(model):
    """A copy of ``model`` that runs every rewritten block in its straightforward form."""
    plain = copy.deepcopy(model)
    dec = plain.semantic.decoder
    dec.heads = types.MethodType(plain_heads, dec)
    plain.snr_module.forward = types.MethodType(plain_snr_forward, plain.snr_module)
    plain.curve_estimator.forward = types.MethodType(plain_curve_forward, plain.curve_estimator)
    for m in plain.modules():
        if isinstance(m, DepthwiseConv2d):
            m.forward = types.MethodType(torch.nn.Conv2d.forward, m)
    return plain


def grads_of(module, loss):
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params, allow_unused=True)


def assert_grads_close(ga, gb, atol, rtol=1e-4):
    assert len(ga) == len(gb)
    for a, b in zip(ga, gb):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=atol, rtol=rtol), (a - b).abs().max()


# -- block by block, float64 ---------------------------------------------------------------------

def test_fused_decoder_heads_equal_the_two_head_modules_in_value_and_gradient():
    torch.manual_seed(0)
    dec = build_model(tiny_config()).semantic.decoder.double()
    u = torch.randn(2, dec.luminance_head[0].in_channels, 12, 10, dtype=torch.float64,
                    requires_grad=True)
    fused, plain = dec.heads(u), plain_heads(dec, u)
    for a, b in zip(fused, plain):
        assert torch.allclose(a, b, atol=1e-12)
    weights = (torch.randn_like(plain[0]), torch.randn_like(plain[1]))

    def loss(outs):
        return (outs[0] * weights[0]).sum() + (outs[1] * weights[1]).sum()

    params = [u, *dec.luminance_head.parameters(), *dec.rgb_residual_head.parameters()]
    ga = torch.autograd.grad(loss(dec.heads(u)), params)
    gb = torch.autograd.grad(loss(plain_heads(dec, u)), params)
    assert_grads_close(ga, gb, atol=1e-12)


@pytest.mark.parametrize("learned", [False, True])
def test_split_fusion_conv_equals_the_concatenated_input(learned):
    torch.manual_seed(0)
    module = SNRAwareDistractionModule(hidden=16).double()
    x = torch.rand(2, 3, 20, 18, dtype=torch.float64)
    snr = torch.rand(2, 1, 20, 18, dtype=torch.float64, requires_grad=True) if learned else None
    outs, ref = module(x, snr), plain_snr_forward(module, x, snr)
    for a, b in zip(outs, ref):
        assert torch.allclose(a, b, atol=1e-12)
    extra = [snr] if learned else []
    ga = torch.autograd.grad(module(x, snr)[0].pow(2).sum(), [*module.parameters(), *extra],
                             allow_unused=True)
    gb = torch.autograd.grad(plain_snr_forward(module, x, snr)[0].pow(2).sum(),
                             [*module.parameters(), *extra], allow_unused=True)
    assert_grads_close(ga, gb, atol=1e-12)


@pytest.mark.parametrize("mode", ["zero_dce", "additive"])
def test_curve_iterations_equal_the_indexing_loop(mode):
    torch.manual_seed(0)
    model = build_model(tiny_config())
    module = ImprovedCurveEstimator(8, 8, mode, model.decisions).double()
    with torch.no_grad():
        module.curve_net[-2].weight.mul_(50.0)  # curves far from 0: large steps every iteration
    inp = torch.rand(2, 4, 16, 14, dtype=torch.float64)
    inp[:, :, :2] = 0.0  # pixels at both ends of the range
    inp[:, :, -2:] = 1.0
    inp.requires_grad_(True)
    (ea, ca), (eb, cb) = module(inp), plain_curve_forward(module, inp)
    assert torch.allclose(ea, eb, atol=1e-12) and torch.allclose(ca, cb, atol=1e-12)
    params = [inp, *module.parameters()]
    ga = torch.autograd.grad(module(inp)[0].pow(2).sum(), params)
    gb = torch.autograd.grad(plain_curve_forward(module, inp)[0].pow(2).sum(), params)
    assert_grads_close(ga, gb, atol=1e-12)


def test_depthwise_conv_runs_in_float32_under_cpu_autocast_and_is_a_plain_conv_otherwise():
    torch.manual_seed(0)
    conv = DepthwiseConv2d(8, 8, 5, padding=2, groups=8, bias=False)
    x = torch.randn(2, 8, 9, 9)
    plain = F.conv2d(x, conv.weight, padding=2, groups=8)
    assert torch.equal(conv(x), plain)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x.bfloat16())
    assert y.dtype == torch.float32
    assert torch.allclose(y, F.conv2d(x.bfloat16().float(), conv.weight, padding=2, groups=8),
                          atol=1e-6)


def test_backbone_builds_its_depthwise_convs_as_depthwise_conv2d():
    model = build_model(tiny_config())
    convs = [m for m in model.semantic.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    depthwise = [m for m in convs if m.groups > 1]
    assert depthwise and all(isinstance(m, DepthwiseConv2d) for m in depthwise)
    assert not any(isinstance(m, DepthwiseConv2d) for m in convs if m.groups == 1)


# -- the whole model, float32 --------------------------------------------------------------------

def _input(seed=3, b=2, h=40, w=36):
    g = torch.Generator().manual_seed(seed)
    return normalize(torch.rand(b, 3, h, w, generator=g) * 0.3)


@pytest.mark.parametrize("train", [False, True])
def test_whole_model_matches_the_straightforward_model_in_outputs_and_gradients(train, one_thread):
    torch.manual_seed(0)
    fast = build_model(tiny_config({"model.channels_last": True}))
    plain = make_plain(build_model(tiny_config({"model.channels_last": False})))
    plain.load_state_dict(fast.state_dict())
    fast.train(train)
    plain.train(train)
    x = _input()
    torch.manual_seed(1)  # the mask's train-time dither draws from the global generator
    out_fast = fast(x)
    torch.manual_seed(1)
    out_plain = plain(x)
    for key in ("enhanced", "mask", "distraction_mask", "snr_map", "curves", "curve_enhanced",
                "semantic_enhanced"):
        assert torch.allclose(out_fast[key], out_plain[key], atol=2e-5), key
    # random-init backbone with batch statistics: logits of order 1 carry rounding of ~1e-5
    assert torch.allclose(out_fast["semantic_features"]["logits"],
                          out_plain["semantic_features"]["logits"], atol=1e-4, rtol=1e-4)
    target = torch.rand_like(out_fast["enhanced"])
    cfg = tiny_config()
    loss = build_stage_loss(2, cfg, fixes_of(cfg), fast)
    ga = grads_of(fast, loss(out_fast, target, denormalize(x)).total)
    gb = grads_of(plain, loss(out_plain, target, denormalize(x)).total)
    assert_grads_close(ga, gb, atol=1e-5, rtol=1e-3)


def test_training_steps_with_the_rewrites_track_the_straightforward_model(one_thread):
    torch.manual_seed(0)
    cfg_fast = tiny_config({"model.channels_last": True})
    cfg_plain = tiny_config({"model.channels_last": False})
    fast = build_model(cfg_fast)
    plain = make_plain(build_model(cfg_plain))
    plain.load_state_dict(fast.state_dict())
    losses, opts = [], []
    for model, cfg in ((fast, cfg_fast), (plain, cfg_plain)):
        model.train()
        losses.append(build_stage_loss(2, cfg, fixes_of(cfg), model))
        opts.append(build_optimizer(model, cfg))
    x, target = _input(seed=5), torch.rand(2, 3, 40, 36, generator=torch.Generator().manual_seed(6))
    for step in range(2):
        for model, loss, opt in zip((fast, plain), losses, opts):
            torch.manual_seed(100 + step)
            total = loss(model(x), target, denormalize(x)).total
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
    for (name, a), b in zip(fast.state_dict().items(), plain.state_dict().values()):
        if a.is_floating_point():
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-3), name


# -- precision of the output layers under autocast -----------------------------------------------

def test_float32_conv2d_is_a_plain_conv_without_autocast():
    torch.manual_seed(0)
    conv = Float32Conv2d(4, 3, 3, padding=1)
    x = torch.randn(1, 4, 8, 8)
    assert torch.equal(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))


def test_output_layers_and_the_enhanced_image_stay_float32_under_bf16_autocast(one_thread):
    torch.manual_seed(0)
    model = build_model(tiny_config()).train()
    seen = {}

    def record(name):
        def hook(_module, _args, out):  # returns None: the output is kept
            seen[name] = out.dtype
        return hook

    for name in ("mask_predictor.net.4", "curve_estimator.curve_net.6"):
        model.get_submodule(name).register_forward_hook(record(name))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_input())
        assert model.semantic.decoder.heads(torch.randn(1, 8, 6, 6))[1].dtype == torch.float32
    assert seen == {"mask_predictor.net.4": torch.float32,
                    "curve_estimator.curve_net.6": torch.float32}
    assert out["enhanced"].dtype == torch.float32
