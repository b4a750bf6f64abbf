"""``remdi-exp config show|keys``, ``presets``, ``--version`` and the "did you mean" suggestions."""
from __future__ import annotations

import importlib.metadata

from typer.testing import CliRunner

from remdinet.config import read_toml_overrides
from remdinet.exp.cli import app
from remdinet.exp.presets import run_overrides
from remdinet.resolve import resolve

runner = CliRunner()
WIDE = {"COLUMNS": "250"}


def test_config_show_prints_a_file_that_train_config_resolves_to_the_same_config(tmp_path):
    args = ["--preset", "tiny", "--profile", "pre_fix", "--disable-fix", "mask_unfreeze",
            "--set", "training.seed=7"]
    result = runner.invoke(app, ["config", "show", *args])
    assert result.exit_code == 0, result.output
    saved = tmp_path / "resolved.toml"
    saved.write_text(result.output)
    from_cli = resolve(run_overrides("tiny", None, ["training.seed=7"],
                                     fixes={"fixes.profile": "pre_fix",
                                            "fixes.disable": ["mask_unfreeze"]}))
    assert resolve(run_overrides(config_file=saved)) == from_cli
    assert read_toml_overrides(saved)["training.seed"] == 7
    assert read_toml_overrides(saved)["fixes.profile"] == "pre_fix"


def test_config_show_of_an_unknown_key_suggests_the_close_one():
    result = runner.invoke(app, ["config", "show", "--set", "training.num_epoch=3"])
    assert result.exit_code == 2
    assert "did you mean 'training.num_epochs'?" in result.output


def test_config_show_suggests_the_preset_fix_and_profile_meant():
    for args, hint in ((["--preset", "tny"], "did you mean 'tiny'?"),
                       (["--disable-fix", "mask_unfreez"], "did you mean 'mask_unfreeze'?"),
                       (["--profile", "prefix"], "did you mean 'pre_fix'?")):
        result = runner.invoke(app, ["config", "show", *args])
        assert result.exit_code == 2 and hint in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_config_keys_lists_type_range_default_and_doc_of_a_section():
    result = runner.invoke(app, ["config", "keys", "training"], env=WIDE)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "training.image_size" in line)
    for word in ("int", "[16, 100000]", "512", "training crop side"):
        assert word in line
    assert "clamps.enhancer_weight_min" not in result.output


def test_config_keys_of_an_unknown_section_suggests_the_close_one():
    result = runner.invoke(app, ["config", "keys", "clamp"])
    assert result.exit_code == 2 and "did you mean 'clamps'?" in result.output


def test_presets_lists_presets_and_studies_with_their_descriptions():
    result = runner.invoke(app, ["presets"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "Test preset: seconds per run on a laptop CPU." in result.output
    assert "clamp ranges of the colour enhancer and the colour affine head" in result.output


def test_a_preset_in_the_working_directory_overrides_the_shipped_one(tmp_path, monkeypatch):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "tiny.toml").write_text("# My own tiny.\n[training]\nseed = 5\n")
    monkeypatch.chdir(tmp_path)
    listing = runner.invoke(app, ["presets"], env=WIDE).output
    line = next(line for line in listing.splitlines() if " tiny " in line)
    assert "./experiments" in line and "My own tiny." in line
    shown = runner.invoke(app, ["config", "show", "--preset", "tiny"]).output
    assert "seed = 5" in shown


def test_version_prints_the_installed_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"remdinet {importlib.metadata.version('remdinet')}"
