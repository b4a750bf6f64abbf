"""``study verify``: the best trials and the baseline retrained on fresh seeds as paired cells."""
from __future__ import annotations

import textwrap

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from remdinet.exp.cli import app
from remdinet.exp.engine import cell_key

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
runner = CliRunner()


def invoke(tracking_uri, tmp_path, *args):
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "--quiet", "--threads", "1",
                                 *args, "--set", f"training.output_dir={tmp_path / 'outputs'}"])
    assert result.exit_code == 0, result.output
    return result


def test_verify_retrains_top_trials_and_baseline_as_paired_cells_once(tmp_path, tracking_uri,
                                                                      storage_url):
    spec = tmp_path / "vs.toml"
    spec.write_text(textwrap.dedent("""
        [study]
        preset = "tiny"
        n_trials = 3
        sampler = "random"
        pruner = "none"
        baseline = true
        [space."color_thresholds.min_saturation"]
        type = "float"
        low = 0.05
        high = 0.2
        """))
    invoke(tracking_uri, tmp_path, "study", "run", str(spec), "--storage", storage_url)
    result = invoke(tracking_uri, tmp_path, "study", "verify", str(spec), "--top", "2",
                    "--seeds", "2", "--storage", storage_url, "--export",
                    str(tmp_path / "winner.toml"))
    assert "3 candidate(s) x 2 seed(s), 6 cell(s) to train" in result.output
    assert "d_psnr_ci_low" in result.output and "verdict" in result.output
    assert ("verified winner" in result.output) == (tmp_path / "winner.toml").is_file()
    assert "verified winner" in result.output or "no candidate beats the baseline" in result.output
    cells = optuna.load_study(study_name="vs-verify", storage=storage_url).get_trials()
    keys = sorted(cell_key(t.user_attrs) for t in cells if t.state == TrialState.COMPLETE)
    labels = sorted({k[0] for k in keys})
    assert len(keys) == 6 and labels[0] == "baseline" and len(labels) == 3
    assert {k[1] for k in keys} == {43, 44}  # fresh seeds: the study trained with 42

    again = invoke(tracking_uri, tmp_path, "study", "verify", str(spec), "--top", "2",
                   "--seeds", "2", "--storage", storage_url)
    assert "0 cell(s) to train" in again.output
    exp = MlflowClient(tracking_uri).get_experiment_by_name("vs")
    runs = MlflowClient(tracking_uri).search_runs([exp.experiment_id], max_results=100)
    verify_parent = [r for r in runs if r.data.tags.get("kind") == "verification"]
    assert len(verify_parent) == 1
    assert "| variant" in verify_parent[0].data.tags["mlflow.note.content"]
