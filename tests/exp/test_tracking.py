"""MLflow helpers: store layout, run termination, param/metric logging, the trainer callback."""
from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

import mlflow.pytorch
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from pg_server import needs_server
from remdinet.config import ConfigError
from remdinet.exp.owner import OWNER_TAG
from remdinet.exp.tracking import (PARAM_VALUE_LIMIT, MlflowCallback, Tracker, artifact_root,
                                   default_tracking_uri, resolve_tracking_uri, ui_command)
from remdinet.model import build_model
from remdinet.model.image import ImageEnhancer
from remdinet.processes import process_label


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    """One store for the module: creating a SQLite store runs MLflow's migrations (seconds)."""
    return Tracker(f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}")


def test_default_store_is_sqlite_under_mlruns_of_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = resolve_tracking_uri(None)
    expected = f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"
    assert uri == default_tracking_uri() == expected
    assert artifact_root(uri) == tmp_path.resolve() / "mlruns" / "artifacts"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    assert resolve_tracking_uri(None) == "sqlite:///x.db"
    assert resolve_tracking_uri("http://h:5000") == "http://h:5000"
    assert artifact_root("http://h:5000") is None


def test_experiments_keep_their_artifacts_next_to_the_database(tracker):
    exp_id = tracker.experiment_id("layout")
    assert tracker.experiment_id("layout") == exp_id
    location = tracker.client.get_experiment(exp_id).artifact_location
    assert Path(location) == artifact_root(tracker.uri) / "layout"


def status(tracker, run_id):
    return tracker.client.get_run(run_id).info.status


def test_run_ends_finished_failed_or_killed(tracker):
    exp = tracker.experiment_id("e")
    with tracker.active_run(exp, "ok") as ok:
        pass
    assert status(tracker, ok) == "FINISHED"
    with pytest.raises(ValueError):
        with tracker.active_run(exp, "bad") as bad:
            raise ValueError("boom")
    assert status(tracker, bad) == "FAILED"
    assert tracker.tags_of(bad)["fail_reason"] == "ValueError: boom"
    with pytest.raises(KeyboardInterrupt):
        with tracker.active_run(exp, "stop") as stop:
            raise KeyboardInterrupt
    assert status(tracker, stop) == "KILLED"
    assert tracker.tags_of(stop)["fail_reason"] == "interrupted: KeyboardInterrupt"


def test_an_active_run_is_owned_by_this_process(tracker):
    with tracker.active_run(tracker.experiment_id("e"), "r") as run_id:
        assert tracker.tags_of(run_id)[OWNER_TAG] == process_label()


def test_a_reopened_run_runs_again_for_this_process_and_ends_with_its_block(tracker):
    exp = tracker.experiment_id("e")
    with pytest.raises(KeyboardInterrupt):
        with tracker.active_run(exp, "r") as run_id:
            raise KeyboardInterrupt
    tracker.set_tags(run_id, {OWNER_TAG: "elsewhere:1"})
    with tracker.reopened(run_id):
        assert status(tracker, run_id) == "RUNNING"
        tags = tracker.tags_of(run_id)
        assert tags[OWNER_TAG] == process_label() and "fail_reason" not in tags
    assert status(tracker, run_id) == "FINISHED"


def test_a_new_tracker_closes_only_the_runs_whose_process_on_this_host_is_gone(tracker):
    exp = tracker.experiment_id("abandoned")
    proc = subprocess.Popen(["true"])
    proc.wait()
    dead = f"{socket.gethostname()}:{proc.pid}"
    owners = {"dead": dead, "live": process_label(), "other host": f"elsewhere:{proc.pid}"}
    runs = {name: tracker.create_run(exp, name, {OWNER_TAG: owner})
            for name, owner in owners.items()}
    runs["no owner"] = tracker.create_run(exp, "no owner")  # an engine's parent run, say
    Tracker(tracker.uri)
    assert {name: status(tracker, run_id) for name, run_id in runs.items()} == {
        "dead": "KILLED", "live": "RUNNING", "other host": "RUNNING", "no owner": "RUNNING"}
    assert tracker.tags_of(runs["dead"])["fail_reason"].startswith(
        f"abandoned: its process {dead} ended without closing the run")
    for run_id in runs.values():
        tracker.terminate(run_id, "FINISHED")


def test_child_run_points_at_its_parent(tracker):
    exp = tracker.experiment_id("e")
    with tracker.active_run(exp, "parent") as parent:
        with tracker.active_run(exp, "child", {"variant": "all-on"}, parent_run_id=parent) as child:
            pass
    tags = tracker.tags_of(child)
    assert tags["mlflow.parentRunId"] == parent and tags["variant"] == "all-on"


def test_params_are_strings_with_lists_comma_joined(tracker):
    exp = tracker.experiment_id("e")
    flat = {f"p.k{i}": i for i in range(150)}  # more than one log_batch worth
    flat.update({"ramp.keys": ["a", "b"], "x.flag": True})
    with tracker.active_run(exp, "r") as run_id:
        tracker.log_params(run_id, flat)
    params = tracker.client.get_run(run_id).data.params
    assert len(params) == 152
    assert params["ramp.keys"] == "a,b" and params["x.flag"] == "true" and params["p.k7"] == "7"


def test_overlong_param_value_is_refused_naming_the_key(tracker):
    exp = tracker.experiment_id("e")
    with pytest.raises(ConfigError, match="data.root"):
        with tracker.active_run(exp, "r") as run_id:
            tracker.log_params(run_id, {"data.root": "x" * (PARAM_VALUE_LIMIT + 1)})


def test_callback_logs_every_epoch_with_the_epoch_as_step(tracker):
    exp = tracker.experiment_id("e")
    with tracker.active_run(exp, "r") as run_id:
        cb = MlflowCallback(tracker, run_id)
        for epoch in range(3):
            cb.on_epoch_end(None, epoch, 1, {"train_loss": 1.0 / (epoch + 1), "loss/edge": 0.5})
    history = tracker.client.get_metric_history(run_id, "train_loss")
    assert [m.step for m in history] == [0, 1, 2]
    assert history[2].value == pytest.approx(1 / 3)
    assert len(tracker.client.get_metric_history(run_id, "loss/edge")) == 3


def test_ui_command_binds_localhost_on_the_project_store(tracking_uri):
    cmd, env = ui_command(tracking_uri, 5123)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert env == {"MLFLOW_BACKEND_STORE_URI": tracking_uri}
    assert "--backend-store-uri" not in cmd
    assert cmd[cmd.index("--port") + 1] == "5123"
    assert cmd[cmd.index("--default-artifact-root") + 1] == str(artifact_root(tracking_uri))


def test_ui_command_binds_the_host_it_is_given(tracking_uri):
    cmd, _ = ui_command(tracking_uri, 5123, "0.0.0.0")
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"


def test_a_run_description_is_its_overview_note(tracker):
    with tracker.active_run(tracker.experiment_id("notes"), "r") as run_id:
        tracker.describe(run_id, "final_psnr **20.1**")
    assert tracker.tags_of(run_id)["mlflow.note.content"] == "final_psnr **20.1**"


def test_a_file_list_is_the_runs_dataset_input_with_a_digest_of_its_content(tracker, tmp_path):
    files = pd.DataFrame({"split": ["train", "val"], "file": ["1.png", "2.png"]})
    with tracker.active_run(tracker.experiment_id("data"), "r") as run_id:
        tracker.log_dataset(run_id, files, "remdinet:set", str(tmp_path), "train")
    (entry,) = tracker.client.get_run(run_id).inputs.dataset_inputs
    assert entry.dataset.name == "remdinet:set" and entry.dataset.digest
    assert [(t.key, t.value) for t in entry.tags] == [("mlflow.data.context", "train")]


RACERS = 6  # runs starting together: with 6, MLflow's bare log_inputs lost the race in 12/15 rounds


@pytest.mark.postgres
@needs_server
def test_runs_starting_together_on_postgresql_each_get_the_shared_dataset(pg_database, tmp_path):
    # MLflow looks a dataset up and then inserts it: runs of one experiment logging the same file
    # list at once (study workers) collide on the unique key unless the loser looks again
    url = pg_database("mlflow")
    trackers = [Tracker(url) for _ in range(RACERS)]
    experiment = trackers[0].experiment_id("race")
    for round_ in range(3):
        files = pd.DataFrame({"split": ["train"], "file": [f"{round_}.png"]})
        runs = [t.client.create_run(experiment).info.run_id for t in trackers]
        start, errors = threading.Barrier(RACERS), []

        def log(t: Tracker, run_id: str) -> None:
            start.wait()
            try:
                t.log_dataset(run_id, files, "remdinet:set", str(tmp_path), "train")
            except MlflowException as exc:  # collected so the assertion names it
                errors.append(str(exc))

        threads = [threading.Thread(target=log, args=pair) for pair in zip(trackers, runs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        inputs = [trackers[0].client.get_run(r).inputs.dataset_inputs for r in runs]
        assert [len(i) for i in inputs] == [1] * RACERS
        assert len({i[0].dataset.digest for i in inputs}) == 1


def test_a_logged_model_loads_with_mlflow_pytorch_and_enhances_an_image(tracker, tiny_cfg):
    model = ImageEnhancer(build_model(tiny_cfg).eval())
    exp = tracker.experiment_id("models")
    with tracker.active_run(exp, "r") as run_id:
        uri = tracker.log_model(run_id, model, {"training.seed": 1})
    (output,) = tracker.client.get_run(run_id).outputs.model_outputs
    assert uri == f"models:/{output.model_id}"
    assert tracker.client.get_logged_model(output.model_id).experiment_id == exp
    with _use_tracking_uri(tracker.uri):
        loaded = mlflow.pytorch.load_model(uri)
    with torch.no_grad():
        out = loaded(torch.rand(1, 3, 32, 32))
    assert out.shape == (1, 3, 32, 32)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
