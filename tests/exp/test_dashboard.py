"""``remdi-exp dashboard``: optuna-dashboard over the project's storage, answering on 127.0.0.1."""
from __future__ import annotations

import json
import signal
import socket
import sys
import textwrap
import urllib.request

import pytest
from typer.testing import CliRunner

import cli_process
from remdinet.exp.cli import app
from remdinet.exp.engine import open_storage, open_study
from remdinet.exp.study import StudyJob
from remdinet.exp.studyspec import load_spec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return None


def test_dashboard_serves_the_storage_with_the_objective_names(tmp_path, tracking_uri,
                                                               storage_url):
    pytest.importorskip("optuna_dashboard", reason="the [dashboard] extra is not installed")
    spec = tmp_path / "mo.toml"
    spec.write_text(textwrap.dedent("""
        [study]
        preset = "tiny"
        metrics = ["psnr", "ssim"]
        [space."color_thresholds.min_saturation"]
        type = "float"
        low = 0.05
        high = 0.2
        """))
    study, _ = open_study(StudyJob(load_spec(spec)), open_storage(storage_url))
    port = free_port()
    proc, log = cli_process.start_cli(tmp_path, tracking_uri, "dashboard", "--storage",
                                      storage_url, "--port", str(port))
    url = f"http://127.0.0.1:{port}/api/studies/{study._study_id}"
    try:
        cli_process.wait_until(lambda: get(url) is not None, proc, log, "a dashboard answer")
        assert get(url)["objective_names"] == ["psnr", "ssim"]
    finally:
        proc.send_signal(signal.SIGINT)
    code, output = cli_process.finish(proc, log)
    assert code == 0, output  # bottle ends its server on Ctrl-C and returns
    assert f"optuna-dashboard at http://127.0.0.1:{port}" in output


def test_without_the_extra_the_command_names_it_in_one_line(tmp_path, tracking_uri, storage_url,
                                                            monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # as if not installed
    result = CliRunner().invoke(app, ["--tracking-uri", tracking_uri, "dashboard", "--storage",
                                      storage_url])
    assert result.exit_code == 2, result.output
    assert "error: the dashboard needs optuna-dashboard" in result.output
    assert "pip install 'remdinet[dashboard]'" in result.output
    assert "Traceback" not in result.output
