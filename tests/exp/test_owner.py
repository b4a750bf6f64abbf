"""Runs owned by a process (tag ``worker`` = ``host:pid``) and closed when that process is gone."""
from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cli_process import finish, start_cli, train_past_first_epoch
from remdinet.exp import cli as cli_mod
from remdinet.exp.cli import app
from remdinet.exp.owner import OWNER_TAG
from remdinet.exp.tracking import Tracker

runner = CliRunner()


def abandoned_run(tracking_uri: str) -> str:
    """A RUNNING run of experiment "train" whose owner process of this host has ended."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    tracker = Tracker(tracking_uri)
    return tracker.create_run(tracker.experiment_id("train"), "killed",
                              {OWNER_TAG: f"{socket.gethostname()}:{ended.pid}"})


def test_compare_closes_the_runs_whose_process_is_gone_before_showing_them(tracking_uri):
    run_id = abandoned_run(tracking_uri)
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "compare", "train"])
    assert result.exit_code == 0, result.output
    assert "KILLED" in result.output and "RUNNING" not in result.output
    run = MlflowClient(tracking_uri).get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["fail_reason"].startswith("abandoned: its process")


def test_ui_closes_the_runs_whose_process_is_gone_before_the_server_starts(tracking_uri,
                                                                          monkeypatch):
    run_id = abandoned_run(tracking_uri)
    seen = []
    monkeypatch.setattr(cli_mod, "serve_ui", lambda cmd, env: (
        seen.append(MlflowClient(tracking_uri).get_run(run_id).info.status),
        0)[1])
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "ui", "--port", "5999"])
    assert result.exit_code == 0, result.output
    assert seen == ["KILLED"]  # already closed when the server started


@pytest.mark.slow
def test_a_sigkilled_trains_run_is_closed_killed_by_the_next_train_which_can_resume_it(
        tmp_path, tracking_uri):
    proc, log = train_past_first_epoch(tmp_path, tracking_uri)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # reaped: the pid no longer exists
    owner = f"{socket.gethostname()}:{proc.pid}"
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert run.info.status == "RUNNING" and run.data.tags[OWNER_TAG] == owner
    # what a kill during a checkpoint write leaves: the temporary file save_checkpoint renames
    half_written = (Path(run.data.tags["run_dir"]) / "checkpoints"
                    / f".last.pth.tmp-{socket.gethostname()}-{proc.pid}")
    half_written.write_bytes(b"half a checkpoint")

    proc, log = start_cli(tmp_path, tracking_uri, "--quiet", "train", "--resume", run.info.run_id)
    code, output = finish(proc, log)
    assert code == 0, output
    assert (f"closed MLflow run {run.info.run_id} KILLED: abandoned: its process {owner} ended "
            f"without closing the run") in output
    resumed = client.get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED"
    assert not half_written.exists()  # removed by the next save into its folder
    # the epochs the killed process saved are in the run once, whether or not it logged them
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_psnr"))
    assert steps == [0, 1, 2, 3]
