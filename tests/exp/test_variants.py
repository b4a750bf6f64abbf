"""Which variants an ablation trains, and how their configs are resolved."""
from __future__ import annotations

import pytest

from remdinet.config import ConfigError
from remdinet.exp.ablate import ALL_ON, PRE_FIX, build_variants, variant_configs
from remdinet.exp.presets import load_preset
from remdinet.fixes import FIXES, FixSet


def labels(variants):
    return [v.label for v in variants]


def test_default_leave_one_out_is_all_on_all_off_and_each_fix_left_out():
    variants = build_variants()
    assert len(variants) == 2 + len(FIXES) == 7
    assert labels(variants)[:2] == [ALL_ON, PRE_FIX]
    assert {v.disabled for v in variants[2:]} == set(FIXES)


def test_leave_one_out_of_one_fix_gives_three_variants():
    variants = build_variants(["mask_unfreeze"])
    assert labels(variants) == [ALL_ON, PRE_FIX, "-mask_unfreeze"]
    assert variants[2].fixset == FixSet.all_on().without("mask_unfreeze")


def test_full_grid_covers_every_subset_of_the_requested_fixes():
    variants = build_variants(["mask_unfreeze", "color_clamps"], grid="full")
    assert len(variants) == 2 + 3
    assert FixSet.all_on().without("mask_unfreeze", "color_clamps") in {v.fixset for v in variants}


def test_full_grid_of_every_fix_contains_all_off_once():
    variants = build_variants(grid="full")
    assert len(variants) == 2 ** len(FIXES) == len({v.fixset for v in variants})


def test_grid_none_runs_only_the_baselines_and_the_requested_variant():
    variants = build_variants(["mask_unfreeze", "ramp_keys.color_thresholds"], grid="none")
    assert len(variants) == 3
    assert variants[2].disabled == "ramp_keys.color_thresholds, mask_unfreeze"


def test_include_corrected_adds_the_corrected_profile():
    assert labels(build_variants(["color_clamps"], include_corrected=True))[-1] == "corrected"


def test_unknown_fix_is_rejected_listing_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown fix 'mask_unfreez'.*valid fixes: .*unfreeze"):
        build_variants(["mask_unfreez"])


def test_unknown_grid_is_rejected():
    with pytest.raises(ConfigError, match="unknown grid 'pairs'"):
        build_variants(grid="pairs")


def test_variant_config_takes_pre_fix_values_unless_set_explicitly():
    variants = build_variants(["mask_unfreeze"])
    base = load_preset("tiny")
    cfgs = variant_configs(variants, base, seeds=2)
    assert len(cfgs) == 3 * 2
    assert cfgs[(PRE_FIX, 42)].optim.grad_clip == 0.25
    assert cfgs[(ALL_ON, 43)].optim.grad_clip == 0.5
    assert cfgs[("-mask_unfreeze", 42)].fixes.disable == ["mask_unfreeze"]
    explicit = variant_configs(variants, {**base, "optim.grad_clip": 0.3}, seeds=1)
    assert explicit[(PRE_FIX, 42)].optim.grad_clip == 0.3


def test_fix_keys_in_the_base_overrides_are_rejected():
    with pytest.raises(ConfigError, match="fixes.profile"):
        variant_configs(build_variants(), {"fixes.profile": "pre_fix"}, seeds=1)
