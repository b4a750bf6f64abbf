"""The remdi-exp command line: help texts, and clean one-line errors with exit code 2."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from remdinet.exp.cli import app

runner = CliRunner()

COMMANDS = {
    (): ["--tracking-uri", "--device", "--quiet", "--threads", "train", "ablate", "study",
         "compare", "evaluate", "ui"],
    ("train",): ["--config", "--preset", "--set", "--data", "--skip-bad"],
    ("evaluate",): ["--checkpoint", "--data", "--out"],
    ("ablate",): ["--disable-fix", "--grid", "--seeds", "--reference-psnr", "--reference-band",
                  "--include-corrected", "--preset", "--config", "--set", "--data"],
    ("study",): ["run", "show"],
    ("study", "run"): ["NAME", "--storage", "--n-trials", "--timeout", "--export", "--preset",
                       "--set", "--data", "--workers", "--join", "--heartbeat-interval",
                       "--grace-period", "--skip-bad"],
    ("study", "show"): ["NAME", "--storage"],
    ("compare",): ["EXPERIMENT", "--filter-tag", "--out"],
    ("ui",): ["--port"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help_naming_its_options(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for word in COMMANDS[command]:
        assert word in result.output, f"{word} missing from help of {command}"


def invoke(tracking_uri, *args):
    return runner.invoke(app, ["--tracking-uri", tracking_uri, *args])


def assert_clean_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.output


def test_unknown_fix_fails_listing_the_valid_fixes(tracking_uri):
    result = invoke(tracking_uri, "ablate", "--preset", "tiny", "--disable-fix", "mask_unfreez")
    assert_clean_error(result, "unknown fix 'mask_unfreez'", "color_clamps", "mask_unfreeze")


def test_bad_set_value_fails_naming_the_key(tracking_uri):
    result = invoke(tracking_uri, "ablate", "--preset", "tiny", "--set", "training.batch_size=two")
    assert_clean_error(result, "training.batch_size")


def test_bad_reference_band_is_a_usage_error(tracking_uri):
    result = invoke(tracking_uri, "ablate", "--reference-band", "19,18")
    assert result.exit_code == 2 and "exceeds" in result.output


def test_bad_study_file_fails_before_training_naming_the_key(tracking_uri, storage_url, tmp_path):
    spec = tmp_path / "broken.toml"
    spec.write_text('[study]\npreset = "tiny"\nn_trials = 1\n'
                    '[space."clamps.enhancer_weight_min"]\ntype = "float"\nlow = 1.0\nhigh = 0.5\n')
    result = invoke(tracking_uri, "study", "run", str(spec), "--storage", storage_url)
    assert_clean_error(result, "clamps.enhancer_weight_min", "must be less than high")
    assert not (tmp_path / "mlruns" / "optuna.db").exists()


def test_unknown_study_name_lists_the_shipped_ones(tracking_uri, storage_url):
    result = invoke(tracking_uri, "study", "run", "colour_clamps", "--storage", storage_url)
    assert_clean_error(result, "unknown study 'colour_clamps'", "color_clamps")


def test_show_of_a_missing_study_names_the_storage(storage_url):
    result = runner.invoke(app, ["study", "show", "nothing", "--storage", storage_url])
    assert_clean_error(result, "no study 'nothing'")


def test_compare_of_a_missing_experiment_lists_the_existing_ones(tracking_uri):
    result = invoke(tracking_uri, "compare", "nothing")
    assert_clean_error(result, "no MLflow experiment 'nothing'")


def test_compare_rejects_an_output_that_is_neither_csv_nor_markdown(tracking_uri, tmp_path):
    from remdinet.exp.tracking import Tracker

    Tracker(tracking_uri).experiment_id("e")
    result = invoke(tracking_uri, "compare", "e", "--out", str(tmp_path / "t.xlsx"))
    assert_clean_error(result, "must end in .csv or .md")
