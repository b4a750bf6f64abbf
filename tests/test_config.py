import math

import pytest

from remdinet.config import (Config, ConfigError, all_keys,
                             apply_overrides, coerce, parse_set_args, read_toml_overrides)
from remdinet.resolve import resolve


def test_toml_round_trip_is_lossless_for_defaults_and_odd_values():
    cfg = apply_overrides(Config(), {
        "loss.w_affine_decay": 1e-17, "data.root": 'dir with "quotes" and ünïcode\\',
        "ramp.keys": ["w_edge"], "fixes.disable": [], "optim.lr_other": 0.1 + 0.2,
    })
    assert Config.from_toml(cfg.to_toml()) == cfg
    assert Config.from_toml(Config().to_toml()) == Config()


def test_flat_dict_round_trip_is_lossless():
    cfg = apply_overrides(Config(), {"stage2.w_ssim": 0.123456789, "fixes.disable": ["ramp_keys"]})
    flat = cfg.to_flat()
    assert all(key.count(".") == 1 for key in flat)
    assert Config.from_flat(flat) == cfg


def test_flat_dict_from_mlflow_strings_restores_types():
    cfg = apply_overrides(Config(), {"fixes.disable": ["mask_unfreeze", "color_clamps"]})
    as_strings = {k: ",".join(v) if isinstance(v, list) else str(v) for k, v in cfg.to_flat().items()}
    assert Config.from_flat(as_strings) == cfg


def test_unknown_key_is_rejected_naming_the_key():
    with pytest.raises(ConfigError, match="clamps.enhancer_weight_mni"):
        Config.from_flat({"clamps.enhancer_weight_mni": 0.9})
    with pytest.raises(ConfigError, match="'nosuchsection'"):
        Config.from_flat({"nosuchsection.x": 1})


def test_out_of_range_and_wrong_type_values_are_rejected_naming_the_key():
    with pytest.raises(ConfigError, match="stage2.w_ssim"):
        coerce("stage2.w_ssim", -1.0)
    with pytest.raises(ConfigError, match="training.batch_size"):
        coerce("training.batch_size", 2.5)
    with pytest.raises(ConfigError, match="training.precision"):
        coerce("training.precision", "fp8")
    with pytest.raises(ConfigError, match="optim.lr_other"):
        coerce("optim.lr_other", math.nan)


def test_min_above_max_is_rejected_naming_both_keys():
    with pytest.raises(ConfigError, match="enhancer_gamma_min.*enhancer_gamma_max"):
        apply_overrides(Config(), {"clamps.enhancer_gamma_min": 1.2})


def test_set_arguments_parse_to_typed_values():
    assert parse_set_args(["training.num_epochs=3", "model.use_snr_awareness=false",
                           "ramp.keys=w_edge,w_ssim"]) == {
        "training.num_epochs": 3, "model.use_snr_awareness": False, "ramp.keys": ["w_edge", "w_ssim"]}
    with pytest.raises(ConfigError, match="key=value"):
        parse_set_args(["training.num_epochs"])


def test_partial_toml_file_reads_as_checked_overrides(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[training]\nnum_epochs = 4\n[stage2]\nw_ssim = 0.5\n")
    assert read_toml_overrides(path) == {"training.num_epochs": 4, "stage2.w_ssim": 0.5}
    path.write_text("[training]\nnum_epoch = 4\n")
    with pytest.raises(ConfigError, match="training.num_epoch"):
        read_toml_overrides(path)
    path.write_text("[training\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        read_toml_overrides(path)


def test_defaults_are_the_post_fix_values():
    cfg = Config()
    assert cfg.optim.grad_clip == 0.5 and cfg.optim.lr_other == 2e-5
    assert cfg.clamps.enhancer_weight_min == 0.98 and cfg.clamps.enhancer_vibrance_init == 1.2
    assert cfg.stage2.w_ssim == 0.45 and cfg.stage3.w_reconstruction == 0.90
    assert cfg.color_thresholds.min_saturation == 0.10
    assert "w_reconstruction" not in cfg.ramp.keys


def test_pre_fix_profile_applies_before_values_and_explicit_overrides_win():
    pre = resolve({"fixes.profile": "pre_fix"})
    assert pre.optim.grad_clip == 0.25 and pre.optim.lr_other == 1e-5
    assert pre.stage2.w_ssim == 0.25 and pre.clamps.enhancer_weight_min == 0.9
    assert pre.color_thresholds.target_saturation == 0.35
    assert "w_reconstruction" in pre.ramp.keys
    explicit = resolve({"fixes.profile": "pre_fix", "optim.grad_clip": 0.7})
    assert explicit.optim.grad_clip == 0.7 and explicit.optim.lr_other == 1e-5


def test_disabling_one_sub_switch_changes_only_its_settings():
    base = Config().to_flat()
    changed = {k for k, v in resolve({"fixes.disable": ["mask_unfreeze.grad_clip"]}).to_flat().items()
               if base[k] != v}
    assert changed == {"optim.grad_clip", "fixes.disable"}


def test_every_key_is_addressable_by_its_flat_name():
    keys = all_keys()
    assert "clamps.enhancer_weight_min" in keys and "color_thresholds.min_saturation" in keys
    for key in keys:
        coerce(key, Config().to_flat()[key])
