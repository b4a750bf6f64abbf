"""``versus``: configurations trained on shared seeds and compared with paired statistics."""
from __future__ import annotations

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from remdinet.exp.cli import app
from remdinet.exp.engine import CELL_ATTR, cell_key
from remdinet.exp.versus import default_name, parse_contender

runner = CliRunner()


def invoke(tracking_uri, tmp_path, *args):
    return runner.invoke(app, ["--tracking-uri", tracking_uri, "--quiet", "--threads", "1",
                               "versus", *args, "--set",
                               f"training.output_dir={tmp_path / 'outputs'}"])


def test_contender_profile_suffix_sets_fixes_profile_and_names_the_job():
    plain, corrected = parse_contender("tiny"), parse_contender("tiny@corrected")
    assert "fixes.profile" not in plain.overrides
    assert corrected.overrides["fixes.profile"] == "corrected"
    assert default_name([plain, corrected]) == "tiny-vs-tiny+corrected"


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_versus_pairs_contenders_by_seed_and_resumes_without_training(tmp_path, tracking_uri,
                                                                       storage_url):
    result = invoke(tracking_uri, tmp_path, "tiny", "tiny@corrected", "--seeds", "2",
                    "--storage", storage_url)
    assert result.exit_code == 0, result.output
    assert "2 candidate(s) x 2 seed(s), 4 cell(s) to train" in result.output
    assert "d_psnr_ci_low" in result.output and "ssim_verdict" in result.output
    cells = optuna.load_study(study_name="tiny-vs-tiny+corrected", storage=storage_url).get_trials()
    done = [t for t in cells if t.state == TrialState.COMPLETE]
    assert sorted(cell_key(t.user_attrs) for t in done) == [
        ("tiny", 42), ("tiny", 43), ("tiny@corrected", 42), ("tiny@corrected", 43)]
    # the candidate's cell carries only its difference from the baseline
    corrected = next(t for t in done if cell_key(t.user_attrs)[0] == "tiny@corrected")
    assert corrected.user_attrs[CELL_ATTR]["overrides"] == {"fixes.profile": "corrected"}

    again = invoke(tracking_uri, tmp_path, "tiny", "tiny@corrected", "--seeds", "2",
                   "--storage", storage_url)
    assert again.exit_code == 0, again.output
    assert "0 cell(s) to train" in again.output
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("versus").experiment_id])
    parent = [r for r in runs if r.data.tags.get("kind") == "versus"]
    assert len(parent) == 1 and "tiny@corrected" in parent[0].data.tags["mlflow.note.content"]


def test_versus_refuses_contenders_that_validate_on_other_images(tmp_path, tracking_uri,
                                                                 storage_url):
    other = tmp_path / "bigger.toml"
    other.write_text('[training]\nimage_size = 48\n[synthetic]\nsize = 80\n', encoding="utf-8")
    result = invoke(tracking_uri, tmp_path, "tiny", str(other), "--storage", storage_url)
    assert result.exit_code == 2, result.output
    assert "synthetic.size" in result.output and "training.image_size" in result.output
    assert not (tmp_path / "mlruns" / "optuna.db").exists()  # refused before any store opened


def test_versus_refuses_a_single_or_repeated_contender(tmp_path, tracking_uri, storage_url):
    alone = invoke(tracking_uri, tmp_path, "tiny", "--storage", storage_url)
    assert alone.exit_code == 2 and "at least one candidate" in alone.output
    twice = invoke(tracking_uri, tmp_path, "tiny", "tiny", "--storage", storage_url)
    assert twice.exit_code == 2 and "given twice" in twice.output
