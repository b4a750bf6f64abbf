"""The experiment layer on CUDA: the doctor's slice, and a study whose two worker processes share
one GPU (``--gpus 0 --workers-per-gpu 2``), run through the CLI as a user runs them."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from cuda_helpers import CUDA
from tiny_setup import write_tiny_study
from remdinet.exp.cli import app
from remdinet.exp.engine import RUN_ATTR

pytestmark = CUDA
STUDY = "gpu_pair"
WAIT = 300  # seconds the study command may take (two tiny trials plus two worker start-ups)


def test_the_doctor_trains_its_slice_on_cuda_and_flags_nothing_on_the_corrected_profile(
        tracking_uri):
    result = CliRunner().invoke(app, ["--tracking-uri", tracking_uri, "--quiet", "--device",
                                      "cuda", "doctor", "--preset", "tiny", "--profile",
                                      "corrected", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["flags"] == 0 and report["label"] == "corrected"
    run = MlflowClient(tracking_uri).get_run(report["run_id"])
    assert run.data.params["training.device"] == "cuda"


def test_two_workers_on_one_gpu_each_train_a_tiny_study_trial_on_cuda(tmp_path, tracking_uri,
                                                                       storage_url):
    spec = write_tiny_study(tmp_path, STUDY)
    cmd = [sys.executable, "-m", "remdinet.exp.cli", "--quiet", "--tracking-uri", tracking_uri,
           "study", "run", str(spec), "--storage", storage_url, "--n-trials", "2", "--gpus", "0",
           "--workers-per-gpu", "2", "--set", f"training.output_dir={tmp_path / 'outputs'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=WAIT)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert len(re.findall(r"^worker \d \(pid \d+\) finished$", output, re.M)) == 2, output
    trials = optuna.load_study(study_name=STUDY, storage=storage_url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    client = MlflowClient(tracking_uri)
    for trial in trials:
        tags = client.get_run(trial.user_attrs[RUN_ATTR]).data.tags
        assert tags["device"] == "cuda" and tags["cuda_visible_devices"] == "0"
