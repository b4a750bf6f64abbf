"""Ablations on the engine: cells run once each by several workers, resumed runs train only what
is missing, a changed base config is refused, workers pinned to devices, a SIGKILLed worker's cell
retried from its checkpoint, SIGTERM to an in-process ablation, adaptive seeds, ``ablate show``; 3
workers on PostgreSQL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from cli_process import LONG_EPOCHS, WORKER_PROCESSES, finish, start_cli, wait_until
from remdinet.exp.cli import app
from pg_server import needs_server
from remdinet.exp.engine import CELL_ATTR, RUN_ATTR, WORKER_ATTR, cell_key

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
runner = CliRunner()
NAME = "abl"
# three variants: all-on, all-off (pre-fix) and all-on without mask_unfreeze
VARIANTS = ("--preset", "tiny", "--grid", "none", "--disable-fix", "mask_unfreeze")
WAIT = 420  # seconds a CLI run of these tests may take on a loaded 2-core machine


def ablate(tracking_uri, tmp_path, *args, code: int = 0):
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "--quiet", "--threads", "1",
                                 "ablate", *VARIANTS, "--name", NAME, *args,
                                 "--set", f"training.output_dir={tmp_path / 'outputs'}"])
    assert result.exit_code == code, result.output
    return result


def cells(storage_url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=NAME, storage=storage_url).get_trials()


def children(client: MlflowClient) -> list:
    exp = client.get_experiment_by_name("ablations")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def assert_each_cell_finished_once(storage_url: str, client: MlflowClient, n: int) -> list:
    done = [t for t in cells(storage_url) if t.state == TrialState.COMPLETE]
    keys = [cell_key(t.user_attrs) for t in done]
    assert len(keys) == len(set(keys)) == n
    finished = [r for r in children(client) if r.info.status == "FINISHED"]
    assert Counter((r.data.tags["cell"], int(r.data.tags["seed"])) for r in finished) == \
        Counter(keys)
    parents = {r.data.tags["mlflow.parentRunId"] for r in children(client)}
    assert len(parents) == 1
    return done


@WORKER_PROCESSES
def test_two_workers_run_each_cell_once_and_a_rerun_trains_only_new_seeds(
        tmp_path, tracking_uri, storage_url):
    result = ablate(tracking_uri, tmp_path, "--seeds", "2", "--workers", "2")
    assert "starting 2 worker processes" in result.output
    client = MlflowClient(tracking_uri)
    done = assert_each_cell_finished_once(storage_url, client, 6)
    assert len({t.user_attrs[WORKER_ATTR] for t in done}) == 2
    assert optuna.get_all_study_names(storage_url) == [NAME]
    table = result.output
    assert "1 seed: no interval" not in table and "nan" not in table.split("ablation wall")[0]

    again = ablate(tracking_uri, tmp_path, "--seeds", "2", "--workers", "2")
    assert "6 cell(s), 6 already there, 0 to train" in again.output
    assert len(children(client)) == 6

    more = ablate(tracking_uri, tmp_path, "--seeds", "3")
    assert "9 cell(s), 6 already there, 3 to train" in more.output
    assert_each_cell_finished_once(storage_url, client, 9)
    assert sorted(int(r.data.tags["seed"]) for r in children(client))[-3:] == [44, 44, 44]

    shown = runner.invoke(app, ["--tracking-uri", tracking_uri, "ablate", "show", NAME])
    assert shown.exit_code == 0, shown.output
    assert "cells: complete 9" in shown.output
    assert "-mask_unfreeze" in shown.output and "verdict" in shown.output

    (parent,) = {r.data.tags["mlflow.parentRunId"] for r in children(client)}
    run = client.get_run(parent)
    assert run.info.status == "FINISHED"
    note = run.data.tags["mlflow.note.content"]
    assert "| variant" in note and "-mask_unfreeze" in note
    csv = pd.read_csv(client.download_artifacts(parent, "ablation/ablation.csv", str(tmp_path)))
    assert csv.set_index("variant").loc["-mask_unfreeze", "n_seeds"] == 3
    artifacts = {a.path for a in client.list_artifacts(parent, "ablation")}
    assert {"ablation/ablation.png", "ablation/ablation_table.json"} <= artifacts
    # three sessions wrote the table: the last one replaced it, one row per variant
    assert {"path": "ablation/ablation_table.json", "type": "table"} in json.loads(
        run.data.tags["mlflow.loggedArtifacts"])
    logged = pd.read_json(client.download_artifacts(parent, "ablation/ablation_table.json",
                                                    str(tmp_path)), orient="split")
    assert sorted(logged["variant"]) == sorted(csv["variant"]) and len(logged) == len(csv)


def test_a_changed_base_config_is_refused_naming_the_keys(tmp_path, tracking_uri):
    ablate(tracking_uri, tmp_path, "--grid", "none")
    result = ablate(tracking_uri, tmp_path, "--set", "optim.lr_scale=2.0", code=2)
    assert "already exists in the storage with a different definition" in result.output
    assert "base.optim.lr_scale: '(unset)' -> 2.0" in result.output
    assert "Traceback" not in result.output


@WORKER_PROCESSES
def test_workers_are_pinned_to_their_gpu_and_runs_tagged_with_it(tmp_path, tracking_uri):
    # no GPU here: the pinning is what the worker process sees; training follows the config (cpu)
    ablate(tracking_uri, tmp_path, "--gpus", "0,1", "--workers-per-gpu", "1",
           "--set", "training.device=cpu")
    runs = children(MlflowClient(tracking_uri))
    assert len(runs) == 3
    for r in runs:
        # worker i is pinned to the i-th GPU of --gpus 0,1
        assert r.data.tags["cuda_visible_devices"] == r.data.tags["worker_index"]
        assert r.data.tags["device"] == "cpu"


def test_until_resolved_adds_seeds_only_where_the_interval_is_undecided(tmp_path, tracking_uri,
                                                                         storage_url):
    result = ablate(tracking_uri, tmp_path, "--seeds", "2", "--until-resolved", "--max-seeds",
                    "3", "--resolution", "0.1")
    client = MlflowClient(tracking_uri)
    (parent,) = {r.data.tags["mlflow.parentRunId"] for r in children(client)}
    table = pd.read_csv(client.download_artifacts(parent, "ablation/ablation.csv", str(tmp_path)))
    rows = table.set_index("variant")
    assert rows.loc["all-on", "stop_reason"] == "reference"
    for variant in ("all-off (pre-fix)", "-mask_unfreeze"):
        row = rows.loc[variant]
        lo, hi = row["d_psnr_ci_low"], row["d_psnr_ci_high"]
        if row["stop_reason"] == "max seeds reached (3)":
            assert row["n_seeds"] == 3 and lo <= 0 <= hi and hi - lo > 0.1
        elif row["stop_reason"] == "interval excludes 0":
            assert lo > 0 or hi < 0
        else:
            assert row["stop_reason"] == "interval narrower than 0.1", result.output
            assert hi - lo <= 0.1
    assert rows.loc["all-on", "n_seeds"] == rows["n_seeds"].max()
    assert_each_cell_finished_once(storage_url, client, int(rows["n_seeds"].sum()))


def _start(tmp_path: Path, tracking_uri: str, storage_url: str, *args: str) -> tuple:
    log = tmp_path / f"cli-{uuid.uuid4().hex[:6]}.log"
    cmd = [sys.executable, "-m", "remdinet.exp.cli", "--quiet", "--threads", "1",
           "--tracking-uri", tracking_uri, "ablate", *VARIANTS, "--name", NAME,
           "--storage", storage_url, "--set", f"training.output_dir={tmp_path / 'outputs'}",
           *args]
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    return proc, log


def _running_cell_with_a_checkpoint(tmp_path: Path, storage_url: str, proc, log: Path):
    folder = tmp_path / "outputs" / "ablations" / NAME
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(encoding="utf-8")
        numbers = {int(p.parts[-3].split("_")[1]) for p in folder.glob("trial_*/checkpoints/last.pth")}
        if numbers:
            for t in optuna.load_study(study_name=NAME, storage=storage_url).get_trials(
                    states=(TrialState.RUNNING,)):
                if t.number in numbers and WORKER_ATTR in t.user_attrs:
                    return t
        time.sleep(0.1)
    raise AssertionError("no cell got past its first epoch in time")


@WORKER_PROCESSES
def test_a_sigkilled_workers_cell_is_retried_from_its_checkpoint_and_finishes_once(
        tmp_path, tracking_uri, storage_url):
    proc, log = _start(tmp_path, tracking_uri, storage_url, "--workers", "2",
                       "--heartbeat-interval", "1", "--grace-period", "3")
    victim = _running_cell_with_a_checkpoint(tmp_path, storage_url, proc, log)
    os.kill(int(victim.user_attrs[WORKER_ATTR].rsplit(":", 1)[1]), signal.SIGKILL)
    code = proc.wait(timeout=WAIT)
    output = log.read_text(encoding="utf-8")
    assert code == 1, output  # every cell finished, but a worker died: said and non-zero
    assert "was killed by SIGKILL" in output
    client = MlflowClient(tracking_uri)
    assert_each_cell_finished_once(storage_url, client, 3)
    trials = {t.number: t for t in cells(storage_url)}
    if trials[victim.number].state == TrialState.COMPLETE:
        pytest.skip("the cell finished before the kill reached its worker")
    (retry,) = [t for t in trials.values() if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.user_attrs[CELL_ATTR] == victim.user_attrs[CELL_ATTR]
    killed = client.get_run(victim.user_attrs[RUN_ATTR])
    assert killed.info.status == "KILLED"
    resumed = client.get_run(retry.user_attrs[RUN_ATTR])
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed_from"].endswith(f"trial_{victim.number}/checkpoints/last.pth")


def test_sigterm_stops_an_in_process_ablation_at_an_epoch_end_and_closes_its_runs_killed(
        tmp_path, tracking_uri, storage_url):
    folder = tmp_path / "outputs" / "ablations" / NAME
    proc, log = start_cli(tmp_path, tracking_uri, "--quiet", "ablate", *VARIANTS, "--name", NAME,
                          "--storage", storage_url, "--workers", "1",
                          "--set", f"training.output_dir={tmp_path / 'outputs'}", *LONG_EPOCHS)
    wait_until(lambda: any(folder.glob("trial_*/checkpoints/last.pth")), proc, log,
               "a cell's first last.pth")
    proc.send_signal(signal.SIGTERM)
    code, output = finish(proc, log)
    assert code == 143, output
    assert f"stopped: ablation '{NAME}' stopped by SIGTERM" in output
    assert "Traceback" not in output
    client = MlflowClient(tracking_uri)
    (stopped,) = [r for r in children(client) if r.info.status != "FINISHED"]
    assert stopped.info.status == "KILLED"
    assert stopped.data.tags["fail_reason"].startswith("interrupted: stopped by SIGTERM at the end")
    (parent,) = {r.data.tags["mlflow.parentRunId"] for r in children(client)}
    assert client.get_run(parent).info.status == "KILLED"
    trial = stopped.data.tags["optuna.trial_number"]
    assert (folder / f"trial_{trial}" / "checkpoints" / "last.pth").is_file()  # for the retry


@WORKER_PROCESSES
@pytest.mark.postgres
@needs_server
def test_three_workers_on_postgresql_give_one_parent_and_one_run_per_cell(tmp_path, pg_database):
    storage, tracking = pg_database("optuna"), pg_database("mlflow")
    proc, log = _start(tmp_path, tracking, storage, "--workers", "3", "--force", "--seeds", "2")
    code = proc.wait(timeout=WAIT)
    assert code == 0, log.read_text(encoding="utf-8")
    client = MlflowClient(tracking)
    done = assert_each_cell_finished_once(storage, client, 6)
    assert len(children(client)) == 6 == len(done)
