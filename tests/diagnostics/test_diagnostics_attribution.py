from remdinet.diagnostics.attribution import GOVERNED_BY, attribute, is_repaired
from remdinet.fixes import CORRECTIONS, FixSet, expand


def test_every_governing_switch_is_a_known_sub_switch_or_correction():
    for switches in GOVERNED_BY.values():
        for switch in switches:
            assert switch in CORRECTIONS or expand(switch) == (switch,)


def test_attribution_names_the_first_switch_that_is_not_repaired():
    fixset = FixSet.all_on()
    assert attribute(fixset, "clamp:color_enhancer.weight") == (
        "enhancer_identity_clamp", "enhancer_identity_clamp")
    fixset = FixSet.corrected().without("color_clamps")
    assert attribute(fixset, "clamp:color_enhancer.weight") == (
        "color_clamps", "color_clamps.enhancer_weight_clamp")


def test_attribution_is_empty_when_every_governing_switch_is_repaired_or_none_exists():
    assert attribute(FixSet.corrected(), "lr:mask") == (None, None)
    assert attribute(FixSet.all_off(), "lr:curve") == (None, None)


def test_a_fix_is_repaired_only_when_all_its_sub_switches_are_on():
    partial = FixSet.all_on().without("mask_unfreeze.grad_clip")
    assert not is_repaired(partial, "mask_unfreeze")
    assert is_repaired(partial, "mask_unfreeze.unfreeze")
    assert not is_repaired(FixSet.all_on(), "affine_decay")
