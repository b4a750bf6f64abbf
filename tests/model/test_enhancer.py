"""UnifiedLowLightEnhancer: shapes, sizes, fix switches, corrections and Appendix B smoke tests."""
from __future__ import annotations

import pytest
import torch
from tiny_setup import tiny_config

from remdinet.colour import denormalize, hsv_saturation, normalize
from remdinet.fixes import FixSet
from remdinet.model import BlockError, UnifiedLowLightEnhancer, build_model
from remdinet.resolve import resolve

@pytest.fixture(scope="module")
def default_model():
    """The reference's default training model (SNR, semantic, learnable SNR), post-fix, eval mode."""
    return build_model(resolve()).eval()


REFERENCE_RECIPE_PARAMS = 7_106_098  # §1.6, incl. 19,937 parameters of dead modules left out here
OUTPUT_KEYS = {"enhanced", "mask", "distraction_mask", "snr_map", "semantic_features", "curves",
               "curve_enhanced", "semantic_enhanced"}


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def dark_input(b=2, h=48, w=40, top=0.2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return normalize(torch.rand(b, 3, h, w, generator=g) * top)


def assert_output_shapes(out, b, h, w, n=8):
    assert set(out) == OUTPUT_KEYS
    assert out["enhanced"].shape == (b, 3, h, w)
    assert out["curve_enhanced"].shape == (b, 3, h, w)
    assert out["semantic_enhanced"].shape == (b, 3, h, w)
    for key in ("mask", "distraction_mask", "snr_map"):
        assert out[key].shape == (b, 1, h, w), key
    assert out["curves"].shape == (b, 3 * n, h, w)
    assert 0.0 <= out["enhanced"].min() and out["enhanced"].max() <= 1.0


@pytest.mark.parametrize("profile", ["post_fix", "pre_fix", "corrected"])
def test_tiny_model_output_shapes_on_odd_size(profile):
    model = build_model(tiny_config({"fixes.profile": profile}))
    out = model(dark_input(2, 97, 131))
    assert_output_shapes(out, 2, 97, 131)
    ph, pw = 128 // 32, 160 // 32  # padded to multiples of 32, logits are not cropped
    assert out["semantic_features"]["logits"].shape == (2, 19, ph, pw)
    assert out["semantic_features"]["probs"].shape == (2, 19, ph, pw)
    assert set(out["semantic_features"]["backbone_features"]) == {
        "scale_1", "scale_2", "scale_4", "scale_8", "scale_16"}
    assert out["semantic_features"]["multi_scale"] == []


def test_default_model_output_shapes_on_odd_size(default_model):
    with torch.no_grad():
        out = default_model(dark_input(1, 97, 131))
    assert_output_shapes(out, 1, 97, 131)
    feats = out["semantic_features"]["backbone_features"]
    assert feats["scale_16"].shape == (1, 960, 4, 5)
    assert feats["scale_1"].shape == (1, 16, 64, 80)


def test_default_parameter_count_matches_reference(default_model):
    total = n_params(default_model)
    assert abs(total - REFERENCE_RECIPE_PARAMS) <= 0.1 * REFERENCE_RECIPE_PARAMS
    sem = default_model.semantic
    parts = {"backbone": n_params(sem.backbone), "head": n_params(sem.head),
             "decoder": n_params(sem.decoder), "snr_module": n_params(default_model.snr_module),
             "snr_estimator": n_params(default_model.snr_estimator),
             "curve": n_params(default_model.curve_estimator),
             "mask": n_params(default_model.mask_predictor),
             "colour_head": n_params(default_model.colour_head),
             "color_enhancer": n_params(default_model.color_enhancer)}
    assert parts == {"backbone": 2_971_952, "head": 842_003, "decoder": 3_152_964,
                     "snr_module": 70_692, "snr_estimator": 18_977, "curve": 18_536,
                     "mask": 11_009, "colour_head": 12, "color_enhancer": 16}
    frozen = sum(p.numel() for p in default_model.parameters() if not p.requires_grad)
    assert frozen == 159_952
    print(f"default model parameters: {total:,}")


def test_tiny_model_is_under_100k_parameters():
    total = n_params(build_model(tiny_config()))
    print(f"tiny model parameters: {total:,}")
    assert total < 100_000


def test_absent_blocks_are_none_and_placeholders_have_reference_shapes():
    cfg = tiny_config({"model.use_snr_awareness": False, "model.use_semantic_guidance": False,
                       "model.disable_color_affine": True, "model.disable_color_enhancer": True})
    model = build_model(cfg)
    assert model.snr_module is None and model.snr_estimator is None and model.semantic is None
    assert model.colour_head is None and model.color_enhancer is None
    x = dark_input(2, 33, 35)
    out = model(x)
    assert out["semantic_features"]["probs"].shape == (2, 19, 64, 64)
    assert torch.equal(out["snr_map"], torch.zeros(2, 1, 33, 35))
    assert torch.allclose(out["semantic_enhanced"], denormalize(x))


def test_prefix_curve_branch_is_identity_and_never_runs_the_curve_net():
    model = build_model(tiny_config({"fixes.profile": "pre_fix"}))
    calls = []
    model.curve_estimator.register_forward_hook(lambda *a: calls.append(1))
    x = dark_input(2, 40, 50)
    out = model(x)
    assert calls == []
    assert torch.allclose(out["curve_enhanced"], denormalize(x), atol=1e-6)
    assert torch.count_nonzero(out["curves"]) == 0
    out["enhanced"].sum().backward()
    assert all(p.grad is None for p in model.curve_estimator.parameters())


def test_postfix_curve_branch_gives_curve_net_a_gradient():
    model = build_model(tiny_config())
    out = model(dark_input(2, 40, 50))
    assert torch.count_nonzero(out["curves"]) > 0
    out["enhanced"].sum().backward()
    grads = [p.grad for p in model.curve_estimator.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_intended_prefix_curve_mode_runs_the_additive_formula():
    model = build_model(tiny_config({"fixes.profile": "pre_fix", "model.before_curve_mode": "intended"}))
    assert model.curve_estimator.mode == "additive"
    x = dark_input(2, 40, 50)
    out = model(x)
    assert torch.count_nonzero(out["curves"]) > 0
    out["curve_enhanced"].sum().backward()
    assert model.curve_estimator.curve_net[0].weight.grad.abs().sum() > 0


def test_block_error_names_the_failing_block(monkeypatch):
    model = build_model(tiny_config())

    def broken(*args):
        raise ValueError("boom")

    monkeypatch.setattr(model.mask_predictor, "forward", broken)
    with pytest.raises(BlockError, match=r"^mask_predictor failed: boom") as info:
        model(dark_input())
    assert isinstance(info.value.__cause__, ValueError)


def test_block_error_names_the_inner_semantic_block(monkeypatch):
    model = build_model(tiny_config())
    monkeypatch.setattr(model.semantic.decoder, "forward",
                        lambda *a: (_ for _ in ()).throw(RuntimeError("bad decoder")))
    with pytest.raises(BlockError, match=r"^semantic\.decoder failed: bad decoder"):
        model(dark_input())


def test_same_seed_gives_identical_output():
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = build_model(tiny_config()).train()
        outs.append(model(dark_input())["enhanced"])
    assert torch.equal(outs[0], outs[1])


def _blocks_without_gradient(model):
    missing = []
    blocks = {"snr_estimator": model.snr_estimator, "snr_module": model.snr_module,
              "semantic.backbone": model.semantic.backbone, "semantic.head": model.semantic.head,
              "semantic.decoder": model.semantic.decoder, "curve_estimator": model.curve_estimator,
              "mask_predictor": model.mask_predictor, "colour_head": model.colour_head,
              "color_enhancer": model.color_enhancer}
    for name, block in blocks.items():
        grads = [p.grad for p in block.parameters() if p.requires_grad]
        if grads and not any(g is not None and g.abs().sum() > 0 for g in grads):
            missing.append(name)
    return missing


def test_gradient_reaches_every_trainable_block_postfix():
    """Documented exception: the SNR module feeds only the guidance map, and the reference's
    clamp01(snr + distraction) is saturated at 1 (zero gradient) on these inputs (§8.1.16)."""
    cfg = tiny_config()
    model = UnifiedLowLightEnhancer(cfg.model, cfg.clamps, FixSet.all_on()).train()
    model(dark_input())["enhanced"].mean().backward()
    assert _blocks_without_gradient(model) == ["snr_module"]


def test_unsaturated_guidance_lets_gradient_reach_the_snr_module():
    cfg = tiny_config()
    fixes = FixSet.all_on().with_corrections("unsaturated_guidance")
    model = UnifiedLowLightEnhancer(cfg.model, cfg.clamps, fixes).train()
    model(dark_input())["enhanced"].mean().backward()
    assert _blocks_without_gradient(model) == []


def test_frozen_mask_predictor_still_passes_gradient_to_its_inputs():
    model = build_model(tiny_config({"fixes.corrections": ["unsaturated_guidance"]})).train()
    model.mask_predictor.requires_grad_(False)
    model(dark_input())["enhanced"].mean().backward()
    assert _blocks_without_gradient(model) == []


def test_reference_branches_are_recorded_and_per_image_mode_records_none():
    model = build_model(tiny_config({"fixes.profile": "pre_fix",
                                     "model.before_curve_mode": "intended"})).train()
    model(dark_input())
    snap = model.branches.snapshot()
    assert all(snap[name]["total"] == 1 for name in snap), snap
    corrected = build_model(tiny_config({"fixes.profile": "pre_fix",
                                         "fixes.corrections": ["per_image_decisions"]})).train()
    corrected(dark_input())
    assert all(v["total"] == 0 for v in corrected.branches.snapshot().values())


def _pair_outputs(overrides):
    model = build_model(tiny_config(overrides)).eval()
    g = torch.Generator().manual_seed(5)
    colourful = torch.rand(1, 3, 40, 40, generator=g) * 0.2
    # Three grey companions pull the batch-mean chroma below the final-boost threshold.
    grey = torch.rand(3, 1, 40, 40, generator=g).expand(3, 3, 40, 40) * 0.9
    with torch.no_grad():
        alone = model(normalize(colourful))["enhanced"]
        together = model(normalize(torch.cat([colourful, grey])))["enhanced"][:1]
    return alone, together


def test_per_image_decisions_make_each_output_independent_of_the_batch():
    alone, together = _pair_outputs({"fixes.profile": "corrected"})
    assert torch.allclose(alone, together, atol=1e-5)


def test_reference_batch_scalar_decisions_make_outputs_depend_on_the_batch():
    alone, together = _pair_outputs({"fixes.corrections": ["enhancer_identity_clamp"]})
    assert (alone - together).abs().max() > 1e-2


def test_channels_last_gives_the_same_output():
    x = dark_input()
    outs = []
    for cl in (False, True):
        torch.manual_seed(7)
        model = build_model(tiny_config({"model.channels_last": cl})).eval()
        with torch.no_grad():
            outs.append(model(x)["enhanced"])
    assert torch.allclose(outs[0], outs[1], atol=1e-5)


# -- Appendix B smoke tests -------------------------------------------------------------------

CLI_DEFAULT = {"model.use_semantic_guidance": False, "model.use_snr_awareness": False,
               "model.use_learnable_snr": True}


@pytest.mark.parametrize("profile,in_mean,out_mean,out_sat", [
    ("pre_fix", 0.03, 0.25, 0.003), ("pre_fix", 0.06, 0.50, 0.003), ("pre_fix", 0.10, 0.78, 0.003),
    ("post_fix", 0.03, 0.09, 0.016), ("post_fix", 0.06, 0.18, 0.016), ("post_fix", 0.10, 0.30, 0.016),
])
def test_cli_default_smoke_matches_appendix_b(profile, in_mean, out_mean, out_sat):
    """Semantic and SNR off, train mode, uniform random input with the given mean (defaults widths:
    the curve and mask nets are small)."""
    model = build_model(resolve({"fixes.profile": profile, **CLI_DEFAULT})).train()
    x01 = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 * in_mean
    with torch.no_grad():
        out = model(normalize(x01))["enhanced"]
    assert out.mean().item() == pytest.approx(out_mean, rel=0.08)
    assert hsv_saturation(out).mean().item() == pytest.approx(out_sat, abs=0.0015)


def _whole_model_smoke(model):
    x01 = torch.rand(2, 3, 100, 130, generator=torch.Generator().manual_seed(0)) * 0.2
    with torch.no_grad():
        out = model.train()(normalize(x01))["enhanced"]
    return out.mean().item(), hsv_saturation(out).mean().item()


def test_whole_model_postfix_output_is_grey():
    mean, sat = _whole_model_smoke(build_model(resolve()))
    assert sat < 0.05  # Appendix B: 0.010
    assert mean > 0.8  # Appendix B: 0.89


def test_whole_model_prefix_output_is_white():
    mean, sat = _whole_model_smoke(build_model(resolve({"fixes.profile": "pre_fix"})))
    assert mean > 0.99 and sat < 0.01


def test_enhancer_identity_clamp_keeps_whole_model_output_colourful():
    mean, sat = _whole_model_smoke(build_model(resolve({"fixes.corrections": ["enhancer_identity_clamp"]})))
    assert sat > 0.3
