"""MaskPredictor: dither, the call counter and the (double) squaring of the mask."""
from __future__ import annotations

import torch
from tiny_setup import tiny_config

from remdinet.colour import normalize
from remdinet.model import Decisions, BranchRecorder, MaskPredictor, build_model, final_saturation_boost
from remdinet.model.mask import DITHER_STD


def inputs():
    g = torch.Generator().manual_seed(0)
    return (torch.rand(1, 3, 8, 8, generator=g), torch.rand(1, 1, 8, 8, generator=g),
            torch.rand(1, 1, 2, 2, generator=g))


def raw(mp, x, gd, sem):
    sem = torch.nn.functional.interpolate(sem, size=(8, 8), mode="bilinear", align_corners=False)
    return mp.net(torch.cat([x, gd, sem], dim=1))


def test_eval_mask_is_squared_and_not_dithered():
    mp = MaskPredictor(5, 8).eval()
    args = inputs()
    with torch.no_grad():
        assert torch.allclose(mp(*args), raw(mp, *args) ** 2)


def test_single_mask_square_predictor_never_squares():
    mp = MaskPredictor(5, 8, square_output=False).eval()
    args = inputs()
    with torch.no_grad():
        assert torch.allclose(mp(*args), raw(mp, *args))


def test_training_squares_only_after_1000_calls():
    mp = MaskPredictor(5, 8).train()
    args = inputs()

    def expected(seed, square):
        torch.manual_seed(seed)
        m = (raw(mp, *args) + DITHER_STD * torch.randn(1, 1, 8, 8)).clamp(0, 1)
        return m * m if square else m

    with torch.no_grad():
        base = raw(mp, *args)
        for call in range(1001):
            if call in (0, 1000):
                torch.manual_seed(call)
            out = mp(*args)
            if call in (0, 1000):
                assert torch.allclose(out, expected(call, square=False)), call
        assert mp.forward_calls == 1001
        torch.manual_seed(5000)
        assert torch.allclose(mp(*args), expected(5000, square=True))
        assert not torch.equal(out, base)  # dithered in training
    assert "forward_calls" not in mp.state_dict()


def test_eval_calls_count_towards_the_counter():
    mp = MaskPredictor(5, 8).eval()
    with torch.no_grad():
        for _ in range(3):
            mp(*inputs())
    assert mp.forward_calls == 3


def _blend_check(corrections):
    """Blend weight is (returned mask)^2 at the enhancer; return (returned mask, raw sigmoid)."""
    cfg = tiny_config({"model.disable_color_affine": True, "model.disable_color_enhancer": True,
                       "fixes.corrections": corrections})
    model = build_model(cfg).eval()
    captured = {}
    model.mask_predictor.net.register_forward_hook(lambda m, i, o: captured.update(raw=o))
    x = normalize(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 0.3)
    with torch.no_grad():
        out = model(x)
    w = out["mask"] ** 2
    blend = (w * out["curve_enhanced"] + (1 - w) * out["semantic_enhanced"]).clamp(0, 1)
    expected = final_saturation_boost(blend, True, Decisions(False, BranchRecorder()))
    assert torch.allclose(out["enhanced"], expected, atol=1e-6)
    return out["mask"], captured["raw"]


def test_reference_eval_blend_weight_is_m4():
    mask, p = _blend_check([])
    assert torch.allclose(mask, p ** 2)  # blend squares again: p^4


def test_single_mask_square_eval_blend_weight_is_m2():
    mask, p = _blend_check(["single_mask_square"])
    assert torch.allclose(mask, p)  # blend weight p^2
