import pytest

from remdinet.config import Config, ConfigError, apply_overrides
from remdinet.fixes import CORRECTIONS, FIXES, FixSet, expand, fixes_of, sub_switch

FIX_NAMES = ["color_diversity_loss", "ramp_keys", "mask_unfreeze", "differentiable_model",
             "color_clamps"]


def test_registry_holds_exactly_the_five_fixes_with_described_sub_switches():
    assert list(FIXES) == FIX_NAMES
    for fix in FIXES.values():
        assert fix.subs and fix.description
        for sub in fix.subs:
            assert sub.name.startswith(fix.name + ".")
            assert sub.description and sub.before and sub.after


def test_after_values_of_the_registry_are_the_config_defaults():
    defaults = Config().to_flat()
    for fix in FIXES.values():
        for sub in fix.subs:
            for key, (_, after) in sub.config_values.items():
                assert defaults[key] == after, key


def test_fix_and_sub_switch_names_are_both_accepted():
    assert expand("mask_unfreeze") == tuple(s.name for s in FIXES["mask_unfreeze"].subs)
    assert expand("mask_unfreeze.grad_clip") == ("mask_unfreeze.grad_clip",)
    assert expand("grad_clip") == ("mask_unfreeze.grad_clip",)
    assert expand("ramp_keys") == tuple(s.name for s in FIXES["ramp_keys"].subs)


def test_unknown_fix_name_is_rejected_listing_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        expand("mask_unfreez")
    assert "mask_unfreez" in str(err.value)
    for name in FIX_NAMES:
        assert name in str(err.value)


def test_all_on_all_off_and_leave_one_out():
    on, off = FixSet.all_on(), FixSet.all_off()
    assert all(on.on(s.name) for f in FIXES.values() for s in f.subs)
    assert not any(off.on(s.name) for f in FIXES.values() for s in f.subs)
    loo = on.without("mask_unfreeze")
    assert loo.disabled_fixes() == ("mask_unfreeze",)
    assert loo.on("color_clamps.enhancer_bias_clamp") and not loo.on("mask_unfreeze.unfreeze")
    assert not on.corrections and set(FixSet.corrected().corrections) == set(CORRECTIONS)


def test_fix_set_round_trips_through_the_config_section():
    fs = FixSet.all_on().without("ramp_keys", "differentiable_model.affine_clamp") \
        .with_corrections("circular_hue")
    cfg = apply_overrides(Config(), fs.to_overrides())
    assert fixes_of(Config.from_toml(cfg.to_toml())) == fs


def test_profiles_in_config_select_the_fix_set():
    assert fixes_of(apply_overrides(Config(), {"fixes.profile": "pre_fix"})) == FixSet.all_off()
    cfg = apply_overrides(Config(), {"fixes.profile": "pre_fix", "fixes.enable": ["color_clamps"]})
    assert fixes_of(cfg).on("color_clamps.enhancer_gamma_clamp")
    assert not fixes_of(cfg).on("mask_unfreeze.grad_clip")


def test_unknown_correction_is_rejected():
    with pytest.raises(ConfigError, match="no_such_correction"):
        fixes_of(apply_overrides(Config(), {"fixes.corrections": ["no_such_correction"]}))


def test_labels_and_tags_describe_the_fix_set():
    assert FixSet.all_on().label() == "all-on"
    assert FixSet.all_off().label().startswith("all-off")
    assert FixSet.corrected().label() == "corrected"
    tags = FixSet.all_on().without("mask_unfreeze.grad_clip").tags()
    assert tags["fix.mask_unfreeze"] == "partial" and tags["fix.color_clamps"] == "on"


def test_inert_sub_switches_are_marked_and_change_no_setting():
    for name in ("ramp_keys.training_defaults", "ramp_keys.ramp_default_warmup"):
        assert sub_switch(name).inert and not sub_switch(name).config_values
