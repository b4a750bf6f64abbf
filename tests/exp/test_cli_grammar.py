"""One grammar for every command: global options after the subcommand, flags shown as flags,
the options shared between commands, and ``compare``'s exit code for a filter matching nothing."""
from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from remdinet.exp.cli import app

runner = CliRunner()
WIDE = {"COLUMNS": "250"}


def test_device_after_the_subcommand_means_the_same_as_before_it():
    before = runner.invoke(app, ["--device", "cpu", "config", "show"])
    after = runner.invoke(app, ["config", "show", "--device", "cpu"])
    assert after.exit_code == 0, after.output
    assert 'device = "cpu"' in after.output
    assert after.output == before.output


def test_a_global_option_after_the_subcommand_wins_over_one_before_it():
    result = runner.invoke(app, ["--device", "cuda", "config", "show", "--device", "cpu"])
    assert 'device = "cpu"' in result.output


def test_threads_after_the_subcommand_sets_torch_threads():
    result = runner.invoke(app, ["config", "keys", "fixes", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 1


def test_tracking_uri_after_a_nested_subcommand_is_the_store_used(tmp_path):
    uri = f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}"
    result = runner.invoke(app, ["compare", "nothing", "--tracking-uri", uri])
    assert result.exit_code == 2
    assert "elsewhere" in result.output


@pytest.mark.parametrize("command", [("train",), ("doctor",), ("study", "run"), ("compare",),
                                     ("ablate",), ()])
def test_flags_render_without_a_type_in_help(command):
    result = runner.invoke(app, [*command, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "--help" in result.output


@pytest.mark.parametrize("command, options", [
    (("train",), ["--profile", "--disable-fix", "Global options", "--device", "--quiet"]),
    (("doctor",), ["--skip-bad", "--profile", "--disable-fix"]),
    (("study", "run"), ["--config", "--threads"]),
    (("config", "show"), ["--preset", "--config", "--set", "--profile", "--disable-fix"]),
])
def test_shared_options_are_offered_by_every_command_that_takes_them(command, options):
    result = runner.invoke(app, [*command, "--help"], env=WIDE)
    for option in options:
        assert option in result.output, (command, option)


def test_train_refuses_profile_with_resume(tracking_uri):
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "train", "--resume", "abc",
                                 "--profile", "pre_fix"])
    assert result.exit_code == 2
    assert "--profile" in result.output and "Traceback" not in result.output


def test_train_with_profile_and_global_options_after_it(tracking_uri, tmp_path, one_thread):
    result = runner.invoke(app, ["train", "--preset", "tiny", "--profile", "pre_fix",
                                 "--tracking-uri", tracking_uri, "--device", "cpu", "--quiet",
                                 "--set", f"training.output_dir={tmp_path / 'outputs'}"])
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert run.data.params["fixes.profile"] == "pre_fix"
    assert run.data.params["training.device"] == "cpu"
    assert run.data.tags["fix.mask_unfreeze"] == "off"


def test_study_run_config_file_may_not_fix_a_searched_key(tracking_uri, storage_url, tmp_path):
    config = tmp_path / "fixed.toml"
    config.write_text("[clamps]\nenhancer_weight_min = 0.5\n")
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "study", "run", "color_clamps",
                                 "--storage", storage_url, "--config", str(config)])
    assert result.exit_code == 2
    assert '"clamps.enhancer_weight_min" (--set or --config)' in result.output


def test_compare_with_a_filter_matching_nothing_exits_1_with_one_line(tracking_uri):
    MlflowClient(tracking_uri).create_experiment("train")
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "compare", "train",
                                 "--filter-tag", "variant=nope"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: no run of experiment 'train' matches --filter-tag variant=nope"]
