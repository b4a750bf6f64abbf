"""Studies run by several worker processes: exact trial counts, one MLflow child run per trial
under one parent, a SIGKILLed worker's trial failed and retried, SIGTERM stopping at an epoch
boundary and the retry resuming from the checkpoint, several SQLite workers on one machine.

The PostgreSQL tests need ``REMDINET_TEST_PG_URL`` (a server where the user may create databases;
``scripts/pg_test_server.sh start`` prints it, and ``.ci/run`` starts one); each test makes its own
databases for Optuna and MLflow.
"""
from __future__ import annotations

import datetime
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

import cli_process
from cli_process import LONG_EPOCHS, WAIT, WORKER_PROCESSES, finish
from pg_server import needs_server
from tiny_setup import write_tiny_study
from remdinet.exp.engine import FAIL_ATTR, PARENT_ATTR, RUN_ATTR, WORKER_ATTR

pytestmark = [pytest.mark.slow, WORKER_PROCESSES]
STUDY = "dist"


def start_cli(tmp_path: Path, tracking_uri: str, *args: str) -> tuple[subprocess.Popen, Path]:
    """``remdi-exp study run`` of the test's spec as a process of its own."""
    return cli_process.start_cli(tmp_path, tracking_uri, "--quiet", "study", "run",
                                 str(write_tiny_study(tmp_path, STUDY)), "--set",
                                 f"training.output_dir={tmp_path / 'outputs'}", *args)


def trials(storage_url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY, storage=storage_url).get_trials(deepcopy=False)


def retries_of(failed: optuna.trial.FrozenTrial, among: list[optuna.trial.FrozenTrial]
               ) -> list[optuna.trial.FrozenTrial]:
    return [t for t in among if t.system_attrs.get("failed_trial") == failed.number]


def child_runs(client: MlflowClient) -> list:
    exp = client.get_experiment_by_name(STUDY)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def parents(client: MlflowClient) -> list:
    exp = client.get_experiment_by_name(STUDY)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def wait_for_trial_past_first_epoch(tmp_path: Path, storage_url: str, proc: subprocess.Popen,
                                    log: Path) -> optuna.trial.FrozenTrial:
    """A RUNNING trial that has finished its first or second epoch (of 4): it has a checkpoint to
    resume from and is still training for a while. The storage is read only once such a
    checkpoint exists (the CLI has set the storage up by then)."""
    folder = tmp_path / "outputs" / "studies" / STUDY
    storage = None
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(encoding="utf-8")
        numbers = {int(p.parts[-3].split("_")[1]) for p in folder.glob("trial_*/checkpoints/last.pth")}
        if numbers:
            storage = storage or optuna.storages.RDBStorage(storage_url)
            study_id = storage.get_study_id_from_name(STUDY)
            for t in storage.get_all_trials(study_id, states=(TrialState.RUNNING,)):
                if (t.number in numbers and t.intermediate_values
                        and max(t.intermediate_values) <= 1 and WORKER_ATTR in t.user_attrs):
                    return t
        time.sleep(0.2)
    raise AssertionError("no trial got past its first epoch in time")


def assert_one_child_run_per_trial(client: MlflowClient, all_trials, parent: str) -> dict:
    children = child_runs(client)
    by_id = {r.info.run_id: r for r in children}
    assert len(children) == len(all_trials)
    assert set(by_id) == {t.user_attrs[RUN_ATTR] for t in all_trials}
    for t in all_trials:
        run = by_id[t.user_attrs[RUN_ATTR]]
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.tags["optuna.trial_number"] == str(t.number)
        assert run.data.tags["worker"] == t.user_attrs[WORKER_ATTR]
        assert run.info.status != "RUNNING"
    return by_id


@pytest.mark.postgres
@needs_server
def test_three_workers_run_exactly_nine_trials_each_one_mlflow_child_of_one_parent(
        tmp_path, pg_database):
    storage, tracking = pg_database("optuna"), pg_database("mlflow")
    proc, log = start_cli(tmp_path, tracking, "--storage", storage, "--workers", "3",
                         "--force", "--n-trials", "9")
    code, output = finish(proc, log)
    assert code == 0, output
    assert len(re.findall(r"^worker \d \(pid \d+\) finished$", output, re.M)) == 3, output
    done = trials(storage)
    assert sorted(t.number for t in done) == list(range(9))  # no duplicated trial numbers
    assert all(t.state == TrialState.COMPLETE for t in done), (
        {t.number: (t.state.name, t.user_attrs.get("fail_reason")) for t in done}, output)
    workers = {t.user_attrs[WORKER_ATTR] for t in done}
    assert 2 <= len(workers) <= 3  # trials are shared out (a slow-starting worker may get none)
    assert optuna.get_all_study_names(storage) == [STUDY]  # no helper study beside it
    client = MlflowClient(tracking)
    (parent,) = parents(client)
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert study.user_attrs[PARENT_ATTR] == parent.info.run_id
    assert parent.info.status == "FINISHED"
    by_id = assert_one_child_run_per_trial(client, done, parent.info.run_id)
    assert {r.info.status for r in by_id.values()} == {"FINISHED"}
    assert {r.data.tags["optuna.state"] for r in by_id.values()} == {"COMPLETE"}


@pytest.mark.postgres
@needs_server
def test_a_sigkilled_workers_trial_is_failed_after_the_grace_period_and_retried_from_its_checkpoint(
        tmp_path, pg_database):
    storage, tracking = pg_database("optuna"), pg_database("mlflow")
    proc, log = start_cli(tmp_path, tracking, "--storage", storage, "--workers", "3",
                         "--force", "--n-trials", "6", "--heartbeat-interval", "1",
                         "--grace-period", "3", *LONG_EPOCHS)
    victim = wait_for_trial_past_first_epoch(tmp_path, storage, proc, log)
    pid = int(victim.user_attrs[WORKER_ATTR].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    killed_at = datetime.datetime.now()
    code, output = finish(proc, log)
    assert code == 1, output  # the study finished, but a worker died: said and non-zero
    assert f"(pid {pid}) was killed by SIGKILL" in output

    done = {t.number: t for t in trials(storage)}
    assert done[victim.number].state == TrialState.FAIL
    (retry,) = [t for t in done.values() if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == victim.params
    assert not [t for t in done.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # the retry took the place of the killed trial: 6 results were asked for, 6 were delivered
    assert sum(t.state == TrialState.COMPLETE for t in done.values()) == 6, (
        {n: (t.state.name, t.system_attrs.get("failed_trial"), t.user_attrs.get("fail_reason"))
         for n, t in done.items()}, output)
    print(f"SIGKILL -> retry trial started: "
          f"{(retry.datetime_start - killed_at).total_seconds():.1f} s (grace period 3 s)")

    client = MlflowClient(tracking)
    (parent,) = parents(client)
    by_id = assert_one_child_run_per_trial(client, list(done.values()), parent.info.run_id)
    killed_run = by_id[done[victim.number].user_attrs[RUN_ATTR]]
    assert killed_run.info.status == "KILLED"
    assert killed_run.data.tags["optuna.state"] == "FAIL"
    assert "no heartbeat from its worker" in killed_run.data.tags[FAIL_ATTR]
    retry_run = by_id[retry.user_attrs[RUN_ATTR]]
    assert retry_run.info.status == "FINISHED"
    assert retry_run.data.tags["optuna.retry_of"] == str(victim.number)
    assert retry_run.data.tags["resumed_from"].endswith(
        f"trial_{victim.number}/checkpoints/last.pth")
    # resumed, not restarted: the epochs before the kill come from the checkpoint
    steps = [m.step for m in client.get_metric_history(retry_run.info.run_id, "val_psnr")]
    assert sorted(steps) == [0, 1, 2, 3]


def test_four_local_workers_share_one_sqlite_study(tmp_path, tracking_uri, storage_url):
    proc, log = start_cli(tmp_path, tracking_uri, "--storage", storage_url, "--workers", "4",
                          "--force", "--n-trials", "4")
    code, output = finish(proc, log)
    assert code == 0, output
    assert "database is locked" not in output
    assert "SQLite serves the workers of one machine" in output
    done = trials(storage_url)
    assert sorted(t.number for t in done) == list(range(4))
    assert all(t.state == TrialState.COMPLETE for t in done)
    client = MlflowClient(tracking_uri)
    (parent,) = parents(client)
    by_id = assert_one_child_run_per_trial(client, done, parent.info.run_id)
    assert {r.info.status for r in by_id.values()} == {"FINISHED"}


def test_sigterm_stops_at_the_epoch_boundary_and_the_retry_resumes_from_the_checkpoint(
        tmp_path, tracking_uri, storage_url):
    # two workers, two trials: the signal reaches the workers through the launching process
    proc, log = start_cli(tmp_path, tracking_uri, "--storage", storage_url, "--n-trials", "2",
                          "--workers", "2", *LONG_EPOCHS)
    victim = wait_for_trial_past_first_epoch(tmp_path, storage_url, proc, log)
    proc.send_signal(signal.SIGTERM)
    code, output = finish(proc, log)
    assert code == 143, output
    assert len(re.findall(r"^worker \d \(pid \d+\) stopped on SIGTERM \(exit 143\)$", output,
                          re.M)) == 2, output
    assert "stopped: study 'dist' stopped by SIGTERM" in output and "Traceback" not in output
    stopped = trials(storage_url)[victim.number]
    assert stopped.state == TrialState.FAIL
    assert stopped.user_attrs[FAIL_ATTR].startswith("interrupted: stopped by SIGTERM at the end "
                                                    "of epoch")
    (waiting,) = retries_of(stopped, trials(storage_url))
    assert waiting.state == TrialState.WAITING
    assert waiting.params == stopped.params
    client = MlflowClient(tracking_uri)
    run = client.get_run(stopped.user_attrs[RUN_ATTR])
    assert run.info.status == "KILLED"
    assert run.data.tags[FAIL_ATTR] == stopped.user_attrs[FAIL_ATTR]
    checkpoint = tmp_path / "outputs" / "studies" / STUDY / f"trial_{stopped.number}" / \
        "checkpoints" / "last.pth"
    assert checkpoint.is_file()  # kept for the retry
    (parent,) = parents(client)
    assert parent.info.status == "KILLED"

    proc, log = start_cli(tmp_path, tracking_uri, "--storage", storage_url, "--join", *LONG_EPOCHS)
    code, output = finish(proc, log)
    assert code == 0, output
    done = trials(storage_url)
    (retried,) = retries_of(stopped, done)
    assert retried.state == TrialState.COMPLETE
    assert {t.state for t in done} == {TrialState.COMPLETE, TrialState.FAIL}
    assert all(t.user_attrs[FAIL_ATTR].startswith("interrupted: stopped by SIGTERM")
               for t in done if t.state == TrialState.FAIL)  # no failure but the stop
    retry_run = client.get_run(retried.user_attrs[RUN_ATTR])
    assert retry_run.data.tags["resumed_from"] == str(checkpoint)
    assert retry_run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    history = client.get_metric_history(retry_run.info.run_id, "val_psnr")
    assert sorted(m.step for m in history) == [0, 1, 2, 3]
    assert not checkpoint.parent.exists()  # cleaned up once the retry finished
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
