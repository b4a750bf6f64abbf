import math

import pytest

from remdinet.resolve import resolve
from remdinet.training.selection import Selection, saturation_penalty, stage_score


def test_saturation_penalty_is_at_most_a_tenth_of_a_db_with_post_fix_thresholds():
    cfg = resolve()
    assert saturation_penalty(0.0, cfg) == pytest.approx(0.10)
    assert saturation_penalty(0.05, cfg) == pytest.approx(0.05)
    assert saturation_penalty(0.5, cfg) == 0.0


def test_pre_fix_thresholds_penalise_up_to_027_db():
    cfg = resolve({"fixes.profile": "pre_fix"})
    assert saturation_penalty(0.0, cfg) == pytest.approx(0.27)


def test_composite_score_weights_psnr_and_twenty_times_ssim():
    cfg = resolve()
    assert stage_score(20.0, 0.85, 0.0, cfg) == pytest.approx(0.7 * 20 + 0.3 * 17)
    assert stage_score(20.0, 0.85, 0.1, resolve({"training.monitor_stage3": "ssim"})) == pytest.approx(16.9)
    assert stage_score(20.0, 0.85, 0.1, resolve({"training.monitor_stage3": "psnr"})) == pytest.approx(19.9)


def test_stage_one_saves_best_s1_on_raw_psnr_and_monitors_adjusted_psnr():
    cfg = resolve()
    sel = Selection()
    d = sel.update(1, 15.0, 0.5, 0.0, cfg)
    assert d.save_best_s1 and not d.save_best_model
    assert d.monitor == pytest.approx(14.9)
    assert not sel.update(1, 14.0, 0.5, 0.0, cfg).save_best_s1


def test_best_model_is_saved_from_save_best_stage_on_only():
    cfg = resolve()
    sel = Selection()
    assert not sel.update(2, 30.0, 0.9, 0.3, cfg).save_best_model
    assert sel.update(3, 10.0, 0.5, 0.3, cfg).save_best_model


def test_carried_best_score_blocks_stage_three_improvement_as_in_the_reference():
    cfg = resolve()
    sel = Selection()
    sel.update(2, 20.0, 0.85, 0.3, cfg)
    sel.new_stage(reset_best=False)
    d = sel.update(3, 20.0, 0.85, 0.3, cfg)  # composite 19.1 < 20
    assert not d.improved and sel.patience == 1


def test_reset_best_per_stage_lets_stage_three_improve():
    cfg = resolve()
    sel = Selection()
    sel.update(2, 20.0, 0.85, 0.3, cfg)
    sel.new_stage(reset_best=True)
    assert sel.update(3, 20.0, 0.85, 0.3, cfg).improved


def test_early_stop_after_patience_validation_events_without_min_delta_gain():
    cfg = resolve({"early_stopping.stage2_patience": 3, "early_stopping.stage2_min_delta": 0.15})
    sel = Selection()
    assert sel.update(2, 20.0, 0.8, 0.3, cfg).improved
    decisions = [sel.update(2, 20.1, 0.8, 0.3, cfg) for _ in range(3)]
    assert [d.stop for d in decisions] == [False, False, True]


def test_disabled_early_stopping_never_stops():
    cfg = resolve({"early_stopping.enabled": False, "early_stopping.stage1_patience": 1})
    sel = Selection()
    sel.update(1, 20.0, 0.8, 0.3, cfg)
    assert not sel.update(1, 10.0, 0.8, 0.3, cfg).stop


def test_nan_psnr_never_improves_nor_saves():
    cfg = resolve()
    sel = Selection()
    sel.update(1, 12.0, 0.5, 0.3, cfg)
    d = sel.update(1, math.nan, math.nan, math.nan, cfg)
    assert not d.improved and not d.save_best_s1
    assert sel.best_s1_psnr == 12.0 and sel.patience == 1


def test_state_dict_round_trip():
    cfg = resolve()
    sel = Selection()
    sel.update(1, 12.0, 0.5, 0.3, cfg)
    copy = Selection()
    copy.load_state_dict(sel.state_dict())
    assert copy == sel
