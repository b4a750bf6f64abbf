"""The key table (``key_specs``) and the suggestions of unknown keys, from the config schema."""
from __future__ import annotations

import pytest

from remdinet.config import ConfigError, all_keys, field_spec, key_specs


def test_key_specs_cover_every_key_with_type_range_and_default():
    specs = {s.key: s for s in key_specs()}
    assert list(specs) == all_keys()
    assert specs["training.precision"].allowed == "fp32 | bf16 | fp16 | auto"
    assert specs["model.num_iterations"].type == "int"
    assert specs["model.num_iterations"].allowed == "[1, 32]"
    assert specs["stage1.w_ssim"].default != specs["stage2.w_ssim"].default  # per-section defaults


def test_a_key_in_the_wrong_section_suggests_the_section_that_has_it():
    with pytest.raises(ConfigError, match=r"did you mean 'training.num_epochs'\?"):
        field_spec("model.num_epochs")


def test_a_key_without_section_suggests_the_full_key():
    with pytest.raises(ConfigError, match=r"did you mean 'training.image_size'\?"):
        field_spec("image_size")
