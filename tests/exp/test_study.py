"""Study machinery without training: pruning callback, storage, resume guard, trials table."""
from __future__ import annotations

import textwrap

import optuna
import pytest

from remdinet.config import Config, ConfigError
from remdinet.exp.engine import (Engine, EngineOptions, PruningCallback, default_storage_url,
                                 open_storage, open_study)
from remdinet.exp.study import StudyJob, _enqueue, load_study, summarize, trials_frame
from remdinet.exp.studyspec import StudySpecError, load_spec
from remdinet.exp.tracking import Tracker


def spec_file(tmp_path, high: float, name: str = "s"):
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(f"""
        [study]
        preset = "tiny"
        n_trials = 1
        sampler = "random"
        [space."color_thresholds.min_saturation"]
        type = "float"
        low = 0.05
        high = {high}
        """))
    return path


def test_pruning_callback_reports_validation_epochs_and_raises_when_told():
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=10.0))
    trial = study.ask()
    cb = PruningCallback(trial)
    cb.on_epoch_end(None, 0, 1, {"train_loss": 1.0})  # no validation: nothing reported
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {}
    with pytest.raises(optuna.TrialPruned, match="epoch 1"):
        cb.on_epoch_end(None, 1, 1, {"val_psnr": 5.0})
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {1: 5.0}


def test_pruning_callback_lets_a_good_trial_continue():
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=1.0))
    cb = PruningCallback(study.ask())
    cb.on_epoch_end(None, 0, 1, {"val_psnr": 5.0})


def test_default_storage_is_sqlite_under_mlruns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_storage_url(None) == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'optuna.db'}"


def test_default_storage_sits_beside_a_sqlite_tracking_store(tmp_path):
    tracking = f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}"
    assert default_storage_url(tracking) == f"sqlite:///{tmp_path / 'elsewhere' / 'optuna.db'}"


def test_resuming_with_a_changed_space_is_refused(tmp_path, storage_url):
    storage = open_storage(storage_url)
    study, _ = open_study(StudyJob(load_spec(spec_file(tmp_path, 0.2))), storage)
    assert study.user_attrs["spec_fingerprint"]
    open_study(StudyJob(load_spec(spec_file(tmp_path, 0.2))), storage)  # unchanged: fine
    with pytest.raises(ConfigError, match=r"different definition: space\.color_thresholds\.min_saturation"):
        open_study(StudyJob(load_spec(spec_file(tmp_path, 0.3))), storage)


def test_trials_table_names_params_by_config_key_and_shows_the_run_id(tmp_path, storage_url):
    storage = open_storage(storage_url)
    study, _ = open_study(StudyJob(load_spec(spec_file(tmp_path, 0.2))), storage)
    space = {"color_thresholds.min_saturation": optuna.distributions.FloatDistribution(0.05, 0.2)}
    trial = study.ask(space)
    trial.set_user_attr("mlflow_run_id", "abc")
    study.tell(trial, 12.5)
    df = trials_frame(load_study("s", storage_url))
    assert list(df["mlflow_run_id"]) == ["abc"]
    assert "color_thresholds.min_saturation" in df.columns
    assert df.loc[0, "value_psnr"] == 12.5 and df.loc[0, "state"] == "COMPLETE"  # metric named


def test_loading_a_missing_study_lists_the_existing_ones(tmp_path, storage_url):
    open_study(StudyJob(load_spec(spec_file(tmp_path, 0.2, "present"))), open_storage(storage_url))
    with pytest.raises(ConfigError, match=r"no study 'absent'.*present"):
        load_study("absent", storage_url)


def test_summary_of_a_multi_objective_study_exports_the_front_member_best_on_the_first_metric(
        tmp_path, tracking_uri):
    path = tmp_path / "mo.toml"
    path.write_text(textwrap.dedent("""
        [study]
        preset = "tiny"
        metrics = ["psnr", "ssim"]
        n_trials = 1
        [space."color_thresholds.min_saturation"]
        type = "float"
        low = 0.05
        high = 0.2
        """))
    spec = load_spec(path)
    study = optuna.create_study(directions=["maximize", "maximize"])
    key = "color_thresholds.min_saturation"
    dist = {key: optuna.distributions.FloatDistribution(0.05, 0.2)}
    # (psnr, ssim): the first two are on the Pareto front, the third is dominated
    for x, values in ((0.06, [20.0, 0.5]), (0.12, [18.0, 0.7]), (0.18, [17.0, 0.4])):
        study.add_trial(optuna.trial.create_trial(params={key: x}, distributions=dist,
                                                  values=values))
    tracker = Tracker(tracking_uri)
    exp = tracker.experiment_id("mo")
    with tracker.active_run(exp, "parent") as parent:
        outcome = summarize(study, spec, tracker, parent, tmp_path / "best.toml",
                            log=lambda m: None)
    assert sorted(t.number for t in outcome.best) == [0, 1]
    exported = (tmp_path / "best.toml").read_text()
    assert exported.startswith("# best trial 0 of study 'mo' (psnr = 20.0000, ssim = 0.5000)")
    assert Config.from_toml(exported).color_thresholds.min_saturation == pytest.approx(0.06)
    assert set(outcome.importances) == {"psnr", "ssim"}
    plots = {a.path for a in tracker.client.list_artifacts(parent, "plots")}
    assert {"plots/optimization_history_ssim.png", "plots/parallel_coordinate_psnr.png",
            "plots/importances_ssim.png"} <= plots


def test_a_grid_study_queues_each_point_once_with_every_parameter_fixed(
        tmp_path, storage_url, tracking_uri):
    path = tmp_path / "g.toml"
    path.write_text(textwrap.dedent("""
        [study]
        preset = "tiny"
        sampler = "grid"
        [space."color_thresholds.min_saturation"]
        type = "float"
        low = 0.05
        high = 0.2
        step = 0.05
        """))
    spec = load_spec(path, overrides={"training.output_dir": str(tmp_path / "out")})
    said: list[str] = []
    with Engine(StudyJob(spec), storage_url, tracking_uri, EngineOptions(), said.append) as engine:
        _enqueue(engine, spec, 3, said.append)
        _enqueue(engine, spec, 5, said.append)  # a second session asks for more than is left
        queued = [t.system_attrs["fixed_params"]["color_thresholds.min_saturation"]
                  for t in engine.trials()]
    assert sorted(queued) == pytest.approx([0.05, 0.1, 0.15, 0.2])
    assert said == ["the grid has 4 points and 3 are taken: queuing 1 trial(s), not 5"]
