import math

import pytest
import torch

from remdinet.config import StageWeights
from remdinet.fixes import FixSet, fixes_of
from remdinet.losses import LossOutput, build_stage_loss
from remdinet.resolve import resolve
from remdinet.training.schedule import (StageSchedule, mix_factor, mix_losses, perceptual_warmup,
                                        ramp_factor, ramp_weights)

POST_FIX = resolve()
PRE_FIX = resolve({"fixes.profile": "pre_fix"})


def test_default_schedule_splits_200_epochs_at_50_and_160():
    s = StageSchedule.from_config(resolve())
    assert (s.s1, s.s2_end, s.num_epochs) == (50, 160, 200)
    assert [s.stage_of(e) for e in (0, 49, 50, 159, 160, 199)] == [1, 1, 2, 2, 3, 3]


def test_readme_recipe_fractions_give_stage_starts_20_and_150():
    s = StageSchedule.from_config(resolve({"training.stage1_frac": 0.10, "training.stage3_frac": 0.25}))
    assert (s.s1, s.s2_end) == (20, 150)


def test_stage_lengths_use_round_half_to_even():
    # 0.25 * 10 = 2.5 rounds to 2 (banker's rounding), 0.35 * 10 = 3.5 rounds to 4
    s = StageSchedule.from_config(resolve({"training.num_epochs": 10, "training.stage1_frac": 0.25,
                                           "training.stage3_frac": 0.35}))
    assert (s.s1, s.s2_end) == (2, 6)


def test_stage_two_keeps_at_least_one_epoch():
    s = StageSchedule.from_config(resolve({"training.num_epochs": 2, "training.stage1_frac": 0.5,
                                           "training.stage3_frac": 0.45}))
    assert (s.s1, s.s2_end) == (1, 2)


def test_validation_epochs_of_the_default_schedule():
    cfg = resolve()
    s = StageSchedule.from_config(cfg)
    epochs = [e for e in range(200) if s.is_validation_epoch(e, cfg)]
    assert epochs[:15] == list(range(15))
    assert epochs[15:] == list(range(15, 200, 5)) + [199]
    assert 50 in epochs and 160 in epochs


def test_validation_at_stage_starts_and_last_epoch_off_the_grid():
    cfg = resolve({"training.num_epochs": 23, "training.val_every": 7, "training.val_dense_epochs": 0})
    s = StageSchedule.from_config(cfg)
    assert [e for e in range(23) if s.is_validation_epoch(e, cfg)] == [0, 6, 7, 14, 18, 21, 22]


def test_stage_two_mix_is_linear_over_the_configured_epochs():
    cfg = resolve({"training.stage2_mix_epochs": 15, "training.stage3_mix_epochs": 5})
    assert [mix_factor(2, e, cfg) for e in (0, 3, 15, 20)] == [0.0, 0.2, 1.0, 1.0]
    assert [mix_factor(3, e, cfg) for e in (0, 1, 5)] == [0.0, 0.2, 1.0]
    assert mix_factor(1, 0, cfg) == 1.0


def test_zero_mix_epochs_switch_criteria_at_once():
    cfg = resolve({"training.stage2_mix_epochs": 0})
    assert mix_factor(2, 0, cfg) == 1.0


def test_stage_three_perceptual_warmup_is_always_one_epoch():
    cfg = resolve()
    s = StageSchedule.from_config(cfg)
    values = [perceptual_warmup(0.06, e, s.s2_end, s, cfg) for e in range(3)]
    assert values == [0.0, 0.06, 0.06]
    assert not any(math.isnan(v) for v in values)


@pytest.mark.parametrize("epoch,expected", [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_six_epochs_split_two_two_two(epoch, expected):
    cfg = resolve({"training.num_epochs": 6, "training.stage1_frac": 1 / 3,
                   "training.stage3_frac": 1 / 3})
    assert StageSchedule.from_config(cfg).stage_of(epoch) == expected


# ------------------------------------------------------------------------------------------
# trainer helpers: ramp and mixing
# ------------------------------------------------------------------------------------------

def test_ramp_values_for_a_ten_epoch_warmup_match_the_reference():
    want = [0, 0.0245, 0.0955, 0.2061, 0.3455, 0.5, 0.6545, 0.7939, 0.9045, 0.9755, 1, 1]
    assert [round(ramp_factor(e, 10), 4) for e in range(12)] == pytest.approx(want)


def test_ramp_weights_scales_only_the_named_keys_and_copies():
    base = StageWeights()
    ramped = ramp_weights(base, ["w_edge", "w_exposure"], 5, 10)
    assert ramped.w_edge == pytest.approx(0.5 * base.w_edge)
    assert ramped.w_exposure == pytest.approx(0.5 * base.w_exposure)
    assert ramped.w_reconstruction == base.w_reconstruction and base.w_edge == 0.12
    with pytest.raises(KeyError, match="w_bogus"):
        ramp_weights(base, ["w_bogus"], 0, 10)


@pytest.mark.parametrize("cfg, l1_row, ssim_row", [
    (PRE_FIX, [0.700, 0.656, 0.624, 0.616, 0.638, 0.692, 0.873, 1.070, 1.133, 1.35],
     [0, 0.000, 0.003, 0.010, 0.023, 0.042, 0.093, 0.146, 0.167, 0.25]),
    (POST_FIX, [0.700, 0.743, 0.787, 0.830, 0.873, 0.917, 1.003, 1.090, 1.133, 1.35],
     [0, 0.030, 0.060, 0.090, 0.120, 0.150, 0.210, 0.270, 0.300, 0.45]),
], ids=["before", "after"])
def test_stage2_transition_coefficients_reproduce_table_5_6(cfg, l1_row, ssim_row):
    fixes = fixes_of(cfg)
    stage1, stage2 = build_stage_loss(1, cfg, fixes), build_stage_loss(2, cfg, fixes)
    e, t = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    out = {"enhanced": e}
    mix_epochs = cfg.training.stage2_mix_epochs
    for epoch, l1_coef, ssim_coef in zip((0, 1, 2, 3, 4, 5, 7, 9, 10, 15), l1_row, ssim_row):
        stage2.weights = ramp_weights(cfg.stage2, cfg.ramp.keys, epoch, cfg.ramp.warmup_epochs)
        mixed = mix_losses(stage1(out, t, t), stage2(out, t, t), min(1.0, epoch / mix_epochs))
        coef = {name: mixed.terms[name].item() / mixed.raw[name]
                for name in ("reconstruction", "ssim") if name in mixed.terms}
        assert coef["reconstruction"] == pytest.approx(l1_coef, abs=6e-4)
        # A zero weight (the ramped BEFORE ssim weight at e = 0) is not computed at all.
        assert coef.get("ssim", 0.0) == pytest.approx(ssim_coef, abs=6e-4)


def test_mix_losses_mixes_totals_and_keeps_terms_summing_to_the_total():
    e, t = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    old = build_stage_loss(1, POST_FIX, FixSet.all_on())({"enhanced": e}, t, t)
    new = build_stage_loss(2, POST_FIX, FixSet.all_on())({"enhanced": e}, t, t)
    mixed = mix_losses(old, new, 0.25)
    assert float(mixed.total) == pytest.approx(0.75 * float(old.total) + 0.25 * float(new.total))
    assert float(sum(mixed.terms.values())) == pytest.approx(float(mixed.total), rel=1e-5)
    assert set(mixed.terms) == set(old.terms) | set(new.terms) == set(mixed.raw)
    assert mix_losses(None, new, 0.25) is new
    with pytest.raises(ValueError, match="factor"):
        mix_losses(old, new, 1.5)
    assert isinstance(mixed, LossOutput)
