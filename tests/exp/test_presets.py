"""Presets in experiments/ and the merge order of a run's overrides."""
from __future__ import annotations

import pytest

from remdinet.config import Config, ConfigError
from remdinet.exp.ablate import fix_controlled_keys, variant_configs
from remdinet.exp.presets import available, load_preset, run_overrides
from remdinet.exp.versus import validation_view
from remdinet.resolve import resolve

PRESETS = ("tiny", "quick", "lol")


def test_every_shipped_preset_resolves_to_a_valid_config():
    assert set(PRESETS) <= set(available("experiments"))
    for name in PRESETS:
        cfg = resolve(load_preset(name))
        assert cfg.training.num_epochs >= 1


@pytest.mark.parametrize("name", PRESETS)
def test_presets_leave_fix_controlled_keys_to_the_fix_set(name):
    # a preset that pinned e.g. optim.grad_clip would neutralise that fix in every ablation
    assert not fix_controlled_keys() & set(load_preset(name))


def test_lol_preset_has_the_paper_settings_and_expects_a_dataset():
    cfg = resolve(load_preset("lol"))
    t = cfg.training
    assert (t.batch_size, t.image_size, t.num_epochs, t.stage1_frac, t.stage3_frac) == \
        (8, 512, 200, 0.25, 0.20)
    assert cfg.data.layout == "lol_v1" and cfg.data.root == ""


def test_quick_preset_uses_the_embedded_data_and_a_reduced_model():
    cfg = resolve(load_preset("quick"))
    assert cfg.data.root == ""
    assert cfg.model.decoder_dim < resolve().model.decoder_dim


def test_recipe_preset_is_the_corrected_full_width_model_with_the_studys_values():
    cfg = resolve(load_preset("recipe"))
    assert cfg.fixes.profile == "corrected"
    assert cfg.model == Config().model
    # the preset's values win over the fix set's post-fix defaults of the same keys
    assert (cfg.optim.lr_scale, cfg.optim.grad_clip, cfg.stage2.w_ssim) == (69.39, 0.3826, 0.0383)
    assert cfg.color_thresholds.critical_saturation < cfg.color_thresholds.min_saturation \
        < cfg.color_thresholds.target_saturation


def test_recipe_preset_validates_on_the_quick_presets_images():
    # `versus quick@corrected recipe` compares them on the same validation images
    assert validation_view(load_preset("recipe")) == validation_view(load_preset("quick"))


def test_recipe_preset_is_refused_as_an_ablation_base_because_it_sets_the_fix_profile():
    with pytest.raises(ConfigError, match="fixes.profile"):
        variant_configs([], load_preset("recipe"), seeds=1)


def test_set_wins_over_config_file_data_and_preset(tmp_path):
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text("[training]\nnum_epochs = 7\nbatch_size = 3\n")
    flat = run_overrides("tiny", cfg_file, ["training.num_epochs=9"], data=tmp_path, device="cpu")
    assert flat["training.num_epochs"] == 9
    assert flat["training.batch_size"] == 3
    assert flat["model.decoder_dim"] == 8  # from the preset
    assert flat["data.root"] == str(tmp_path.resolve())
    assert flat["training.device"] == "cpu"


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ConfigError, match=r"unknown preset 'nope'.*quick"):
        load_preset("nope")


def test_bad_set_item_names_the_key():
    with pytest.raises(ConfigError, match="training.nonsense"):
        run_overrides(None, None, ["training.nonsense=1"])
