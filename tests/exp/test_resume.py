"""``train`` stopped by a signal and continued with ``train --resume`` in the same MLflow run."""
from __future__ import annotations

import json
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cli_process import finish, start_cli, train_past_first_epoch
from remdinet.config import ConfigError
from remdinet.exp.cli import app
from remdinet.exp.owner import OWNER_TAG
from remdinet.exp.resume import resume_point
from remdinet.exp.runs import RUN_RECORD, TRAIN_EXPERIMENT, ResumedHistory
from remdinet.exp.tracking import Tracker


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    """One store for the module: creating a SQLite store runs MLflow's migrations (seconds)."""
    return Tracker(f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}")


def stopped_train_run(tracker: Tracker, folder: Path | None, status: str = "KILLED") -> str:
    """A ``train`` run ended ``status`` whose run folder (tag ``run_dir``) holds a last.pth."""
    tags = {} if folder is None else {"run_dir": str(folder)}
    run_id = tracker.create_run(tracker.experiment_id(TRAIN_EXPERIMENT), "train", tags)
    if folder is not None:
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "checkpoints" / "last.pth").write_bytes(b"")
        (folder / RUN_RECORD).write_text(json.dumps({"run_id": run_id}))
    if status != "RUNNING":
        tracker.terminate(run_id, status)
    return run_id


def test_a_run_id_resumes_from_the_last_checkpoint_in_its_run_folder(tracker, tmp_path):
    run_id = stopped_train_run(tracker, tmp_path / "run")
    assert resume_point(tracker, run_id) == (run_id, tmp_path / "run" / "checkpoints" / "last.pth")


def test_a_checkpoint_path_resumes_the_run_recorded_in_its_run_folder(tracker, tmp_path):
    run_id = stopped_train_run(tracker, tmp_path / "run", status="FAILED")
    path = tmp_path / "run" / "checkpoints" / "last.pth"
    assert resume_point(tracker, str(path)) == (run_id, path)


def test_a_checkpoint_without_its_run_record_is_refused_naming_the_record(tracker, tmp_path):
    path = tmp_path / "run" / "checkpoints" / "last.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    with pytest.raises(ConfigError, match=f"{tmp_path / 'run' / RUN_RECORD} is missing"):
        resume_point(tracker, str(path))


@pytest.mark.parametrize("status, message", [("FINISHED", "the run is FINISHED"),
                                             ("RUNNING", "the run is RUNNING, in process")])
def test_a_finished_or_running_run_is_not_resumed(tracker, tmp_path, status, message):
    run_id = stopped_train_run(tracker, tmp_path / "run", status=status)
    with pytest.raises(ConfigError, match=message):
        resume_point(tracker, run_id)


def test_runs_that_cannot_be_continued_are_refused_with_the_reason(tracker, tmp_path):
    with pytest.raises(ConfigError, match="no such checkpoint file, and not an MLflow run id"):
        resume_point(tracker, str(tmp_path / "missing.pth"))
    with pytest.raises(ConfigError, match="no such MLflow run"):
        resume_point(tracker, "0" * 32)
    with pytest.raises(ConfigError, match="stopped before training started"):
        resume_point(tracker, stopped_train_run(tracker, None))
    other = tracker.create_run(tracker.experiment_id("ablations"), "cell")
    tracker.terminate(other, "KILLED")
    with pytest.raises(ConfigError, match="a run of experiment 'ablations'"):
        resume_point(tracker, other)


def resume_cli(tracker: Tracker, target: str):
    return CliRunner().invoke(app, ["--tracking-uri", tracker.uri, "train", "--resume", target])


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("error: ") == 1
    assert len(result.output.strip().splitlines()) == 1, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_resume_of_a_missing_path_or_run_is_one_line_naming_it(tracker, tmp_path):
    missing = tmp_path / "no" / "last.pth"
    assert_one_line_error(resume_cli(tracker, str(missing)),
                          f"--resume {missing}: no such checkpoint file, and not an MLflow run id")
    assert_one_line_error(resume_cli(tracker, "f" * 32),
                          f"--resume {'f' * 32}: no such MLflow run in the tracking store")
    assert_one_line_error(resume_cli(tracker, str(tmp_path)),
                          f"--resume {tmp_path}: a folder, not a checkpoint file")


def test_resume_of_a_file_that_is_no_checkpoint_names_it_and_leaves_the_run_stopped(tracker,
                                                                                   tmp_path):
    run_id = stopped_train_run(tracker, tmp_path / "run")
    notes = tmp_path / "run" / "checkpoints" / "notes.txt"
    notes.write_text("not a checkpoint")
    assert_one_line_error(resume_cli(tracker, str(notes)), f"{notes}: not a loadable checkpoint")
    assert_one_line_error(resume_cli(tracker, run_id),  # its last.pth is empty
                          f"{tmp_path / 'run' / 'checkpoints' / 'last.pth'}: not a loadable")
    (tmp_path / "run" / RUN_RECORD).write_text("{half")
    assert_one_line_error(resume_cli(tracker, str(notes)),
                          f"{tmp_path / 'run' / RUN_RECORD} is not the run record")
    assert tracker.client.get_run(run_id).info.status == "KILLED"  # never reopened


@pytest.mark.parametrize("args, message", [
    (["--preset", "tiny"],
     "--preset, --config, --data, --profile and --disable-fix cannot be given with it"),
    (["--skip-bad", "--set", "training.device=cpu"], "may be set, not data.skip_bad")])
def test_resume_refuses_options_that_change_the_checkpoints_config(tracker, tmp_path, args,
                                                                    message):
    run_id = stopped_train_run(tracker, tmp_path / "run")
    result = CliRunner().invoke(app, ["--tracking-uri", tracker.uri, "train", "--resume", run_id,
                                      *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert tracker.client.get_run(run_id).info.status == "KILLED"  # not reopened


def test_restored_epochs_are_logged_only_where_the_run_lacks_them(tracker):
    run_id = tracker.create_run(tracker.experiment_id(TRAIN_EXPERIMENT), "train")
    for epoch in (0, 1):
        tracker.log_metrics(run_id, {"epoch": epoch, "val_psnr": 10.0}, step=epoch)
    # a killed process saved epoch 2 in last.pth but died before logging it
    history = [{"epoch": e, "val_psnr": 10.0 + e} for e in range(3)]
    ResumedHistory(tracker, run_id).on_train_start(SimpleNamespace(history=history))
    steps = [m.step for m in tracker.client.get_metric_history(run_id, "val_psnr")]
    assert sorted(steps) == [0, 1, 2]


def metric_steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


@pytest.mark.slow
def test_sigterm_stops_train_at_an_epoch_end_and_resume_finishes_the_same_run(
        tmp_path, tracking_uri):
    proc, log = train_past_first_epoch(tmp_path, tracking_uri)
    proc.send_signal(signal.SIGTERM)
    code, output = finish(proc, log)
    assert code == 143, output
    assert "stopped: stopped by SIGTERM at the end of epoch" in output
    assert "Traceback" not in output

    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert run.info.status == "KILLED"
    reason = run.data.tags["fail_reason"]
    assert reason.startswith("interrupted: stopped by SIGTERM at the end of epoch")
    stopped_at = int(reason.rsplit(" ", 1)[1])
    assert stopped_at < 3  # mid-training: the resume below has epochs left to train
    last = Path(run.data.tags["run_dir"]) / "checkpoints" / "last.pth"
    assert last.is_file()
    assert metric_steps(client, run.info.run_id, "val_psnr") == list(range(stopped_at + 1))

    proc, log = start_cli(tmp_path, tracking_uri, "--quiet", "train", "--resume", run.info.run_id)
    code, output = finish(proc, log)
    assert code == 0, output
    assert f"run {run.info.run_id}:" in output
    (resumed,) = client.search_runs([run.info.experiment_id])
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert "fail_reason" not in resumed.data.tags
    assert resumed.data.tags["resumed_from"] == str(last)
    assert resumed.data.tags[OWNER_TAG] != run.data.tags[OWNER_TAG]  # the resuming process
    assert metric_steps(client, run.info.run_id, "val_psnr") == [0, 1, 2, 3]
    assert metric_steps(client, run.info.run_id, "final_psnr") == [3]
