"""Names that become folders (studies, ablations, verifications, MLflow experiments) cannot leave
their folder, and deletes prove that their target lies inside the folder they tidy."""
from __future__ import annotations

import textwrap

import pytest
from typer.testing import CliRunner

from remdinet.config import ConfigError
from remdinet.exp.cli import app
from remdinet.exp.engine import CellJob, Engine, EngineOptions
from remdinet.exp.names import check_name
from remdinet.exp.tracking import Tracker
from remdinet.paths import OutsideRootError, remove_inside

runner = CliRunner()
ESCAPING = ["../../../x", "/tmp/abs", "a/b", "a\\b", "..", "a..b", "", ".hidden", "-flag", "a b"]


def assert_clean_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.mark.parametrize("name", ["quick-leave-one-out", "tiny-none-mask_unfreeze.sub+x",
                                  "color_clamps-verify", "train"])
def test_folder_names_of_letters_digits_and_punctuation_are_accepted(name):
    assert check_name(name, "--name") == name


@pytest.mark.parametrize("name", ESCAPING)
def test_names_with_separators_parent_references_or_absolute_paths_are_refused_naming_the_flag(
        name):
    with pytest.raises(ConfigError, match="^--name: "):
        check_name(name, "--name")


def study_file(folder, name_line: str):
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "spec.toml"
    spec.write_text(textwrap.dedent(f"""\
        [study]
        {name_line}
        preset = "tiny"
        n_trials = 1
        [space."color_thresholds.min_saturation"]
        type = "float"
        low = 0.05
        high = 0.2
        """))
    return spec


@pytest.mark.parametrize("name", ["../../../escaped", "/tmp/escaped-abs"])
def test_study_name_escaping_its_folder_fails_naming_the_key_and_creates_nothing(tmp_path, name):
    spec = study_file(tmp_path / "inside", f'name = "{name}"')
    result = runner.invoke(app, ["--tracking-uri", f"sqlite:///{tmp_path / 'mlruns' / 'm.db'}",
                                 "study", "run", str(spec),
                                 "--storage", f"sqlite:///{tmp_path / 'mlruns' / 'o.db'}",
                                 "--set", f"training.output_dir={tmp_path / 'inside' / 'out'}"])
    assert_clean_error(result, "[study] name", repr(name))
    assert not (tmp_path / "mlruns").exists()
    assert not (tmp_path / "inside" / "out").exists()


def test_study_file_stem_that_cannot_name_a_folder_fails_naming_the_file_name(tmp_path):
    spec = study_file(tmp_path, "")
    bad = spec.rename(tmp_path / "two words.toml")
    result = runner.invoke(app, ["study", "run", str(bad), "--storage",
                                 f"sqlite:///{tmp_path / 'o.db'}"])
    assert_clean_error(result, "[study] name (the file name)", "'two words'")


def test_ablation_name_with_a_separator_fails_naming_the_flag(tmp_path):
    result = runner.invoke(app, ["--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", "ablate",
                                 "--preset", "tiny", "--name", "../outside", "--storage",
                                 f"sqlite:///{tmp_path / 'o.db'}"])
    assert_clean_error(result, "--name: '../outside'")
    assert not (tmp_path / "o.db").exists()


def test_engine_refuses_a_job_whose_name_escapes_before_opening_any_store(tmp_path):
    job = CellJob(kind="verification", name="../x-verify", experiment="x", base={})
    with pytest.raises(ConfigError, match="^verification name: '../x-verify'"):
        Engine(job, f"sqlite:///{tmp_path / 'o.db'}", f"sqlite:///{tmp_path / 'm.db'}",
               EngineOptions())
    assert list(tmp_path.iterdir()) == []


def test_an_mlflow_experiment_name_that_escapes_its_artifact_folder_is_refused(tracking_uri):
    with pytest.raises(ConfigError, match="^MLflow experiment name: '../../x'"):
        Tracker(tracking_uri).experiment_id("../../x")


# -- deletes -------------------------------------------------------------------------------------
def test_remove_inside_deletes_a_folder_below_the_root(tmp_path):
    target = tmp_path / "out" / "trial_0" / "checkpoints"
    target.mkdir(parents=True)
    (target / "last.pth").write_bytes(b"x")
    remove_inside(target, tmp_path / "out")
    assert not target.exists() and (tmp_path / "out" / "trial_0").is_dir()


def test_remove_inside_refuses_a_target_that_dot_dots_out_of_the_root(tmp_path):
    (tmp_path / "out").mkdir()
    victim = tmp_path / "precious"
    victim.mkdir()
    with pytest.raises(OutsideRootError, match="refusing to delete"):
        remove_inside(tmp_path / "out" / ".." / "precious", tmp_path / "out")
    assert victim.is_dir()


def test_remove_inside_refuses_a_symlink_that_leads_out_of_the_root(tmp_path):
    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    trial = tmp_path / "out" / "trial_0"
    trial.mkdir(parents=True)
    (trial / "checkpoints").symlink_to(victim, target_is_directory=True)
    with pytest.raises(OutsideRootError):
        remove_inside(trial / "checkpoints", tmp_path / "out")
    assert (victim / "keep.txt").read_text() == "mine"


def test_remove_inside_refuses_the_root_itself(tmp_path):
    with pytest.raises(OutsideRootError):
        remove_inside(tmp_path, tmp_path)
    assert tmp_path.is_dir()
