"""The remdi-exp command line: help texts, and clean one-line errors with exit code 2."""
from __future__ import annotations

import signal
import socket
import urllib.request
from pathlib import Path

import pytest
from cli_process import finish, start_cli, wait_until
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from remdinet.exp.cli import app

runner = CliRunner()

COMMANDS = {
    (): ["--tracking-uri", "--device", "--quiet", "--threads", "train", "ablate", "study",
         "compare", "evaluate", "ui", "dashboard"],
    ("train",): ["--config", "--preset", "--set", "--data", "--skip-bad"],
    ("evaluate",): ["--checkpoint", "--data", "--out"],
    ("ablate",): ["--disable-fix", "--grid", "--seeds", "--reference-psnr", "--reference-band",
                  "--include-corrected", "--preset", "--config", "--set", "--data"],
    ("study",): ["run", "show"],
    ("study", "run"): ["NAME", "--storage", "--n-trials", "--timeout", "--export", "--preset",
                       "--set", "--data", "--workers", "--join", "--heartbeat-interval",
                       "--grace-period", "--skip-bad", "--pick"],
    ("study", "show"): ["NAME", "--storage"],
    ("compare",): ["EXPERIMENT", "--filter-tag", "--out", "--columns", "--sort"],
    ("ui",): ["--port", "--host"],
    ("dashboard",): ["--storage", "--host", "--port", "remdinet[dashboard]"],
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


def _two_runs(tracking_uri) -> None:
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("e")
    for name, lr, psnr in (("low", "0.1", 19.0), ("high", "0.25", 21.5)):
        run_id = client.create_run(experiment, run_name=name).info.run_id
        client.log_param(run_id, "optim.lr", lr)
        client.log_param(run_id, "training.seed", "1")
        client.log_metric(run_id, "final_psnr", psnr)
        client.set_terminated(run_id)


def test_compare_shows_name_status_the_params_that_differ_and_the_run_metrics(tracking_uri):
    _two_runs(tracking_uri)
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "compare", "e"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0].split()
    assert header == ["run_name", "status", "params.optim.lr", "metrics.final_psnr", "run_id"]


def test_compare_on_a_terminal_prints_a_rich_table(tracking_uri):
    _two_runs(tracking_uri)
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "compare", "e"],
                           env={"FORCE_COLOR": "1", "NO_COLOR": "1", "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "┃" in result.output and "params.optim.lr" in result.output


def test_compare_columns_and_sort_pick_and_order_the_table_and_the_out_file(tracking_uri,
                                                                           tmp_path):
    _two_runs(tracking_uri)
    out = tmp_path / "t.csv"
    result = invoke(tracking_uri, "compare", "e", "--columns", "metrics.final_psnr,run_name",
                    "--sort", "-metrics.final_psnr", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert [line.split() for line in result.output.splitlines()] == [
        ["metrics.final_psnr", "run_name"], ["21.5000", "high"], ["19.0000", "low"]]
    assert out.read_text().splitlines() == ["metrics.final_psnr,run_name", "21.5,high",
                                            "19.0,low"]
    ascending = invoke(tracking_uri, "compare", "e", "--columns", "run_name",
                       "--sort", "metrics.final_psnr")
    assert ascending.output.split() == ["run_name", "low", "high"]


def test_compare_with_an_unknown_column_fails_in_one_line_naming_the_closest(tracking_uri):
    _two_runs(tracking_uri)
    result = invoke(tracking_uri, "compare", "e", "--columns", "run_name,metrics.final_psnrr")
    assert_clean_error(result, "--columns: unknown column 'metrics.final_psnrr'; did you mean "
                               "'metrics.final_psnr'?")
    assert len(result.output.strip().splitlines()) == 1


def test_export_of_a_multi_objective_study_without_pick_fails_before_any_trial(
        tracking_uri, storage_url, tmp_path):
    spec = tmp_path / "mo.toml"
    spec.write_text('[study]\npreset = "tiny"\nmetrics = ["psnr", "ssim"]\nn_trials = 1\n'
                    '[space."color_thresholds.min_saturation"]\ntype = "float"\n'
                    'low = 0.05\nhigh = 0.2\n')
    result = invoke(tracking_uri, "study", "run", str(spec), "--storage", storage_url,
                    "--export", str(tmp_path / "best.toml"))
    assert_clean_error(result, "several objectives (psnr, ssim)", "--pick METRIC")
    assert not (tmp_path / "mlruns" / "optuna.db").exists()


def test_train_into_a_log_file_writes_one_line_per_epoch_no_carriage_return_one_notice(
        tracking_uri, tmp_path):
    proc, log = start_cli(tmp_path, tracking_uri, "train", "--preset", "tiny",
                          "--set", f"training.output_dir={tmp_path / 'out'}")
    code, output = finish(proc, log)
    assert code == 0, output
    assert "\r" not in output  # no progress-bar frames off a terminal
    assert output.count("backbone is randomly initialised") == 1  # once per process
    assert [line.split(" [")[0] for line in output.splitlines()
            if line.startswith("epoch ") and " [s" in line] == [f"epoch {e}" for e in range(4)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
            return True
    except OSError:
        return False


def _processes() -> list[tuple[int, str, int, int]]:
    """(pid, state, parent pid, process group) of every process on the machine."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while the folder was listed
            continue
        found.append((int(stat.parent.name), fields[0], int(fields[1]), int(fields[2])))
    return found


def test_ui_serves_until_stopped_and_then_leaves_no_process_of_its_server(tracking_uri,
                                                                          tmp_path):
    port = _free_port()
    proc, log = start_cli(tmp_path, tracking_uri, "ui", "--host", "127.0.0.1", "--port",
                          str(port))
    wait_until(lambda: _answers(port), proc, log, "an answer from the MLflow UI")
    (server,) = [pid for pid, _, parent, _ in _processes() if parent == proc.pid]
    assert len([p for p in _processes() if p[3] == server]) > 1  # the server and its workers
    proc.send_signal(signal.SIGINT)
    code, output = finish(proc, log)
    assert code == 130, output
    assert not _answers(port)
    # nothing of the server's group lives on (an unreaped zombie holds no port and runs nothing)
    assert [p for p in _processes() if p[3] == server and p[1] != "Z"] == []
