"""Fault handling of studies inside one process: failing and diverging trials, stale trials and
their retries, the race to create a study and its parent run, option checks."""
from __future__ import annotations

import math
import re
import textwrap
import threading
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

import remdinet.exp.engine._runner as runner_mod
from remdinet.data.feeding import available_cpus
from remdinet.exp.cli import app
from remdinet.exp.engine import (FAIL_ATTR, RUN_ATTR, WORKER_ATTR, WORKERS_PER_CORE,
                                 DivergenceGuard, PruningCallback, Retrier, TrialFailure,
                                 open_storage, open_study, parent_run)
from remdinet.exp.engine._storage import fail_stale
from remdinet.exp.study import StudyJob, trials_frame
from remdinet.exp.studyspec import load_spec
from remdinet.exp.tracking import Tracker
from remdinet.training.trainer import Trainer

runner = CliRunner()


def spec_file(tmp_path, body: str = "", name: str = "faults"):
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(f"""
        [study]
        preset = "tiny"
        pruner = "none"
        {body}
        [space."color_thresholds.min_saturation"]
        type = "categorical"
        choices = [0.05, 0.1, 0.15]
        """))
    return path


def test_divergence_guard_fails_an_epoch_whose_loss_is_not_finite():
    guard = DivergenceGuard()
    guard.on_epoch_end(None, 0, 1, {"train_loss": 0.5, "val_psnr": 12.0, "skipped_batches": 1})
    with pytest.raises(TrialFailure, match=r"diverged at epoch 2: train_loss = nan \(2 training "
                                           r"batch\(es\) of the epoch skipped"):
        guard.on_epoch_end(None, 2, 1, {"train_loss": math.nan, "skipped_batches": 2})
    with pytest.raises(TrialFailure, match="val_psnr = inf"):
        guard.on_epoch_end(None, 3, 1, {"train_loss": 0.5, "val_psnr": math.inf,
                                        "skipped_batches": 0})


def test_divergence_guard_fails_an_epoch_whose_validation_batches_were_all_non_finite():
    guard = DivergenceGuard()
    with pytest.raises(TrialFailure, match=r"diverged at epoch 1: val_psnr = nan, val_ssim = nan "
                                           r"\(0 training batch\(es\) of the epoch skipped for a "
                                           r"non-finite loss, 3 validation batch\(es\) with "
                                           r"non-finite metrics\)"):
        guard.on_epoch_end(None, 1, 1, {"train_loss": 0.5, "val_psnr": math.nan,
                                        "val_ssim": math.nan, "skipped_batches": 0,
                                        "val_skipped_batches": 3})


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_trial_whose_validation_is_all_non_finite_fails_as_diverged_not_scored_0(
        tmp_path, tracking_uri, storage_url, monkeypatch):
    real_init = Trainer.__init__

    def nan_output(module, args, out):  # every validation batch is non-finite
        return out if module.training else {**out, "enhanced": out["enhanced"] * math.nan}

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.model.register_forward_hook(nan_output)

    monkeypatch.setattr(Trainer, "__init__", init)
    spec = spec_file(tmp_path, 'n_trials = 1\nsampler = "grid"\npruner = "median"',
                     name="nanval")
    spec.write_text(spec.read_text().replace('pruner = "none"\n', ""))
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "--quiet", "study", "run",
                                 str(spec), "--storage", storage_url,
                                 "--set", f"training.output_dir={tmp_path / 'out'}"])
    assert result.exit_code == 0, result.output
    (trial,) = optuna.load_study(study_name="nanval", storage=storage_url).trials
    assert trial.state == TrialState.FAIL
    assert re.match(r"TrialFailure: diverged at epoch \d+: val_psnr = nan", trial.user_attrs[FAIL_ATTR])
    assert "validation batch(es) with non-finite metrics" in trial.user_attrs[FAIL_ATTR]
    assert 0.0 not in trial.intermediate_values.values()


class _Restored:
    history = [{"epoch": 0, "val_psnr": 9.0}, {"epoch": 1, "train_loss": 1.0},
               {"epoch": 2, "val_psnr": 11.0}]


def test_pruning_callback_reports_the_epochs_a_resumed_run_restored():
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    PruningCallback(trial).on_train_start(_Restored())
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {0: 9.0, 2: 11.0}


def test_of_processes_racing_to_start_a_new_study_one_creates_it_and_its_only_parent_run(
        tmp_path, storage_url, tracking_uri):
    spec = load_spec(spec_file(tmp_path, "n_trials = 1"))
    # the stores exist already (Optuna and MLflow create their tables on first use, and that
    # first use must not itself be a race)
    open_storage(storage_url)
    exp_id = Tracker(tracking_uri).experiment_id(spec.name)
    results: list[tuple[bool, str]] = []
    lock = threading.Lock()

    def start():
        storage = open_storage(storage_url)
        study, created = open_study(StudyJob(spec), storage)
        parent = parent_run(study, StudyJob(spec), Tracker(tracking_uri), created,
                            storage.get_study_id_from_name(spec.name))
        with lock:
            results.append((created, parent))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(created for created, _ in results) == [False, False, False, True]
    assert len({parent for _, parent in results}) == 1
    runs = MlflowClient(tracking_uri).search_runs([exp_id])
    assert [r.info.run_id for r in runs] == [results[0][1]]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_stale_trial_is_failed_its_run_killed_and_it_is_retried_once(tmp_path, storage_url,
                                                                       tracking_uri, logged):
    tracker = Tracker(tracking_uri)
    retrier = Retrier(tracker, grace_period=1)
    storage = open_storage(storage_url, heartbeat_interval=1, grace_period=1,
                           on_stale=retrier.on_stale)
    study = optuna.create_study(study_name="stale", storage=storage, direction="maximize")
    exp_id = tracker.experiment_id("stale")

    def start_and_die(trial: optuna.Trial) -> str:
        # what a worker does before it is killed: a run, its attributes, a heartbeat
        run_id = tracker.create_run(exp_id, f"trial {trial.number}")
        trial.set_user_attr(RUN_ATTR, run_id)
        trial.set_user_attr(WORKER_ATTR, "host:123")
        trial.suggest_float("x", 0.0, 1.0)
        storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(
            study._study_id, trial.number))
        return run_id

    run_id = start_and_die(study.ask())
    time.sleep(2.5)
    fail_stale(study, grace_period=1)
    first, retry = study.get_trials()
    assert first.state == TrialState.FAIL
    assert retry.state == TrialState.WAITING
    assert retry.system_attrs["failed_trial"] == 0
    assert retry.params == first.params
    assert RUN_ATTR not in retry.user_attrs and WORKER_ATTR not in retry.user_attrs
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1  # the retry is queued
    run = tracker.client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert "no heartbeat from its worker host:123 for more than 1 s" in run.data.tags[FAIL_ATTR]
    assert study.get_trials()[0].user_attrs[FAIL_ATTR] == run.data.tags[FAIL_ATTR]  # in Optuna too
    assert trials_frame(study)["retry_of"].tolist()[1] == 0
    shown = runner.invoke(app, ["--tracking-uri", tracking_uri, "study", "show", "stale",
                                "--storage", storage_url])
    assert shown.exit_code == 0, shown.output
    assert "no heartbeat from its worker host:123" in shown.output

    start_and_die(study.ask())  # the retry is popped from the queue, and dies too
    time.sleep(2.5)
    fail_stale(study, grace_period=1)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.FAIL]
    assert "trial 1 is not retried: it is already the retry of trial 0" in logged.messages[-1]
    assert not study.get_trials(states=(TrialState.WAITING,))


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_raising_and_a_diverging_trial_fail_with_their_reason_and_the_study_goes_on(
        tmp_path, tracking_uri, storage_url, monkeypatch):
    real_train = runner_mod.train_in_run
    real_epoch = Trainer._train_epoch

    def train(tracker, run_id, cfg, **kwargs):
        if cfg.color_thresholds.min_saturation == 0.1:
            raise RuntimeError("boom in trial training")
        return real_train(tracker, run_id, cfg, **kwargs)

    def epoch(self, e):
        metrics = real_epoch(self, e)
        if self.cfg.color_thresholds.min_saturation == 0.15 and e == 1:
            metrics["train_loss"] = math.nan  # every batch diverged
        return metrics

    monkeypatch.setattr(runner_mod, "train_in_run", train)
    monkeypatch.setattr(Trainer, "_train_epoch", epoch)
    spec = spec_file(tmp_path, 'n_trials = 3\nsampler = "grid"')
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "--quiet", "study", "run",
                                 str(spec), "--storage", storage_url,
                                 "--set", f"training.output_dir={tmp_path / 'out'}"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="faults", storage=storage_url)
    by_value = {t.params["color_thresholds.min_saturation"]: t for t in study.trials}
    assert by_value[0.05].state == TrialState.COMPLETE
    client = MlflowClient(tracking_uri)
    raised, diverged = by_value[0.1], by_value[0.15]
    assert raised.state == diverged.state == TrialState.FAIL
    assert raised.user_attrs[FAIL_ATTR] == "RuntimeError: boom in trial training"
    assert diverged.user_attrs[FAIL_ATTR].startswith(
        "TrialFailure: diverged at epoch 1: train_loss = nan")
    for trial in (raised, diverged):
        run = client.get_run(trial.user_attrs[RUN_ATTR])
        assert run.info.status == "FAILED"
        assert run.data.tags["optuna.state"] == "FAIL"
        assert run.data.tags[FAIL_ATTR] == trial.user_attrs[FAIL_ATTR]
    artifacts = {a.path for a in client.list_artifacts(raised.user_attrs[RUN_ATTR])}
    assert "traceback.txt" in artifacts
    history = client.get_metric_history(diverged.user_attrs[RUN_ATTR], "train_loss")
    assert math.isnan(next(m.value for m in history if m.step == 1))  # logged before failing
    assert not list((tmp_path / "out" / "studies" / "faults").glob("trial_*/checkpoints"))


@pytest.mark.parametrize("args, message", [
    (["--join", "--n-trials", "2"], "--join adds no trials to the study"),
    (["--heartbeat-interval", "10", "--grace-period", "10"],
     "--grace-period (10 s) must be longer than --heartbeat-interval (10 s)"),
    (["--join"], "--join: there is no study 'faults' in the storage yet"),
])
def test_inconsistent_worker_options_are_refused_before_any_training(tmp_path, tracking_uri,
                                                                      storage_url, args, message):
    spec = spec_file(tmp_path, "n_trials = 1")
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "study", "run", str(spec),
                                 "--storage", storage_url, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command, planned", [
    (["study", "run", "SPEC"], "the 2 trial(s) to run"),
    (["ablate", "--preset", "tiny", "--grid", "none", "--disable-fix", "mask_unfreeze"],
     "the 3 cell(s) to run"),  # all-on, all-off and the variant, one seed each
    (["versus", "tiny", "tiny@pre_fix", "--seeds", "1"], "the 2 cell(s) to run"),
])
def test_more_workers_than_trials_or_cells_are_refused_naming_workers_before_anything_exists(
        tmp_path, command, planned):
    spec = spec_file(tmp_path, "n_trials = 2")
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    args = [str(spec) if a == "SPEC" else a for a in command]
    result = runner.invoke(app, ["--tracking-uri", uri, *args, "--workers", "9",
                                 "--set", f"training.output_dir={tmp_path / 'out'}"])
    assert result.exit_code == 2, result.output
    assert f"error: --workers 9 is more than {planned}" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "out").exists()


def test_workers_far_beyond_the_cores_are_refused_without_force(tmp_path):
    many = WORKERS_PER_CORE * available_cpus() + 1
    spec = spec_file(tmp_path, f"n_trials = {many}")
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    result = runner.invoke(app, ["--tracking-uri", uri, "study", "run", str(spec),
                                 "--workers", str(many),
                                 "--set", f"training.output_dir={tmp_path / 'out'}"])
    assert result.exit_code == 2, result.output
    assert f"error: --workers {many}: this machine has {available_cpus()} core(s)" in result.output
    assert f"{many} workers need about" in result.output and "--force" in result.output
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "out").exists()


def test_join_to_a_missing_study_is_refused_leaving_no_store_and_no_folder(tmp_path):
    spec = spec_file(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    result = runner.invoke(app, ["--tracking-uri", uri, "study", "run", str(spec), "--join",
                                 "--set", f"training.output_dir={tmp_path / 'out'}"])
    assert result.exit_code == 2, result.output
    assert "error: --join: there is no study 'faults' in the storage yet" in result.output
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "out").exists()


def test_join_to_a_missing_study_in_an_existing_storage_adds_no_study(tmp_path, storage_url):
    optuna.create_study(study_name="other", storage=open_storage(storage_url))
    spec = spec_file(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    result = runner.invoke(app, ["--tracking-uri", uri, "study", "run", str(spec), "--join",
                                 "--storage", storage_url,
                                 "--set", f"training.output_dir={tmp_path / 'out'}"])
    assert result.exit_code == 2, result.output
    assert "--join: there is no study 'faults'" in result.output
    assert optuna.get_all_study_names(storage_url) == ["other"]
    assert not (tmp_path / "mlruns" / "mlflow.db").exists() and not (tmp_path / "out").exists()
