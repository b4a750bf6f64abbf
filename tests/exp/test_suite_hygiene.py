"""The suite's own assumptions hold however it is started: from a shell that ignores SIGINT
(``nohup``, a background job) and with ``REMDINET_TEST_PG_URL`` set but empty."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cli_process import finish, train_past_first_epoch

HERE = Path(__file__).parent


def test_an_empty_test_server_url_counts_as_unset():
    env = {**os.environ, "REMDINET_TEST_PG_URL": ""}
    shown = subprocess.run([sys.executable, "-c", "import pg_server; print(pg_server.PG_URL)"],
                           cwd=HERE, env=env, capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "None"


@pytest.mark.slow
def test_sigint_stops_the_cli_at_an_epoch_end_even_when_the_suite_ignores_sigint(
        tmp_path, tracking_uri):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup: children inherit it
    try:
        proc, log = train_past_first_epoch(tmp_path, tracking_uri)
    finally:
        signal.signal(signal.SIGINT, previous)
    proc.send_signal(signal.SIGINT)
    code, output = finish(proc, log)
    assert code == 130, output
    assert "stopped: stopped by SIGINT at the end of epoch" in output
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert run.info.status == "KILLED"
