"""Runs owned by a process (tag ``worker`` = ``host:pid``) and closed when that process is gone."""
from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from cli_process import LONG_EPOCHS, finish, start_cli, wait_until
from remdinet.exp.owner import OWNER_TAG, is_gone, process_label


def ended_pid() -> int:
    """The pid of a process that has ended and been reaped (a zombie would still exist)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_an_ended_process_of_this_host_is_gone_and_a_live_one_is_not():
    assert is_gone(f"{socket.gethostname()}:{ended_pid()}")
    assert not is_gone(process_label())
    assert process_label() == f"{socket.gethostname()}:{os.getpid()}"


def test_a_process_of_another_host_is_never_gone():
    assert not is_gone(f"elsewhere-{socket.gethostname()}:{ended_pid()}")


@pytest.mark.slow
def test_a_sigkilled_trains_run_is_closed_killed_by_the_next_train_which_can_resume_it(
        tmp_path, tracking_uri):
    out = tmp_path / "outputs"
    proc, log = start_cli(tmp_path, tracking_uri, "--quiet", "train", "--preset", "tiny",
                          "--set", f"training.output_dir={out}", *LONG_EPOCHS)
    wait_until(lambda: any(out.glob("train/*/checkpoints/last.pth")), proc, log,
               "first epoch's last.pth")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # reaped: the pid no longer exists
    owner = f"{socket.gethostname()}:{proc.pid}"
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert run.info.status == "RUNNING" and run.data.tags[OWNER_TAG] == owner

    proc, log = start_cli(tmp_path, tracking_uri, "--quiet", "train", "--resume", run.info.run_id)
    code, output = finish(proc, log)
    assert code == 0, output
    assert (f"closed MLflow run {run.info.run_id} KILLED: abandoned: its process {owner} ended "
            f"without closing the run") in output
    resumed = client.get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED"
    # the epochs the killed process saved are in the run once, whether or not it logged them
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_psnr"))
    assert steps == [0, 1, 2, 3]
