import math

import pytest

from remdinet.config import resolve
from remdinet.training.schedule import StageSchedule, mix_factor, perceptual_warmup


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
