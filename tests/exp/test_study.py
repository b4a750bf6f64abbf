"""Study machinery without training: pruning callback, storage, resume guard, trials table."""
from __future__ import annotations

import textwrap

import optuna
import pytest

from remdinet.config import Config, ConfigError
from remdinet.exp.engine import (Engine, EngineOptions, PruningCallback, default_storage_url,
                                 open_storage, open_study)
from remdinet.exp.study import (StudyJob, _enqueue, check_pick, load_study, summarize,
                                trials_frame)
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


@pytest.mark.parametrize("pick, exported_trial", [(None, 0), ("ssim", 1)])
def test_summary_of_a_multi_objective_study_exports_the_front_member_best_on_the_picked_metric(
        tmp_path, tracking_uri, pick, exported_trial):
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
        outcome = summarize(study, spec, tracker, parent, tmp_path / "best.toml", pick)
    assert sorted(t.number for t in outcome.best) == [0, 1]
    exported = (tmp_path / "best.toml").read_text()
    assert exported.startswith(f"# best trial {exported_trial} of study 'mo'")
    assert Config.from_toml(exported).color_thresholds.min_saturation == pytest.approx(
        (0.06, 0.12)[exported_trial])
    assert set(outcome.importances) == {"psnr", "ssim"}
    plots = {a.path for a in tracker.client.list_artifacts(parent, "plots")}
    assert {"plots/optimization_history_ssim.png", "plots/parallel_coordinate_psnr.png",
            "plots/importances_ssim.png", "plots/pareto_front.png"} <= plots


def test_export_of_a_multi_objective_study_needs_a_pick_among_its_metrics(tmp_path):
    path = tmp_path / "mo.toml"
    path.write_text('[study]\npreset = "tiny"\nmetrics = ["psnr", "ssim"]\n'
                    '[space."color_thresholds.min_saturation"]\ntype = "float"\n'
                    'low = 0.05\nhigh = 0.2\n')
    spec = load_spec(path)
    with pytest.raises(StudySpecError, match=r"several objectives \(psnr, ssim\).*--pick METRIC"):
        check_pick(spec, tmp_path / "best.toml", None)
    with pytest.raises(StudySpecError, match=r"--pick 'ms_ssim' is not an objective"):
        check_pick(spec, tmp_path / "best.toml", "ms_ssim")
    check_pick(spec, tmp_path / "best.toml", "ssim")
    check_pick(spec, None, None)  # no export: the artifact takes the first metric


def test_metric_names_of_the_objectives_are_in_the_storage(tmp_path, storage_url):
    open_study(StudyJob(load_spec(spec_file(tmp_path, 0.2))), open_storage(storage_url))
    assert optuna.load_study(study_name="s", storage=storage_url).metric_names == ["psnr"]


GOOD_CURVES = [[0.5 + 0.01 * t + 0.05 * e for e in range(6)] for t in range(4)]
BAD_CURVE = [0.3, 0.2, 0.1, 0.05, 0.02, 0.01]
PRUNERS = {
    "median": 'pruner = "median"\n[study.pruner_options]\nn_startup_trials = 1',
    "percentile": 'pruner = "percentile"\n[study.pruner_options]\npercentile = 25.0\n'
                  'n_startup_trials = 1',
    "successive_halving": 'pruner = "successive_halving"\n[study.pruner_options]\n'
                          'min_resource = 1\nreduction_factor = 2',
    "patient": 'pruner = "patient"\n[study.pruner_options]\npatience = 1',
    "patient wrapping median": 'pruner = "patient"\n[study.pruner_options]\npatience = 1\n'
                               'wrapped_pruner = "median"\n'
                               '[study.pruner_options.wrapped_pruner_options]\n'
                               'n_startup_trials = 1',
    "wilcoxon": 'pruner = "wilcoxon"',
}


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_each_pruner_prunes_an_ssim_study_on_its_val_ssim_curve(tmp_path, name):
    path = tmp_path / "p.toml"
    path.write_text('[study]\npreset = "tiny"\nmetric = "ssim"\n' + PRUNERS[name] + '\n'
                    '[space."color_thresholds.min_saturation"]\ntype = "float"\n'
                    'low = 0.05\nhigh = 0.2\n')
    job = StudyJob(load_spec(path))
    study = optuna.create_study(direction="maximize", pruner=job.make_pruner())

    def run(curve):  # the trainer's per-epoch metrics: PSNR always high, SSIM as given
        trial = study.ask()
        callback = PruningCallback(trial, job.prune_metric)
        try:
            for epoch, value in enumerate(curve):
                callback.on_epoch_end(None, epoch, 1, {"val_psnr": 40.0, "val_ssim": value})
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return True
        study.tell(trial, curve[-1])
        return False

    assert [run(curve) for curve in GOOD_CURVES] == [False] * len(GOOD_CURVES)
    assert run(BAD_CURVE)
    assert study.trials[-1].state == optuna.trial.TrialState.PRUNED


def test_a_grid_study_queues_each_point_once_with_every_parameter_fixed(
        tmp_path, storage_url, tracking_uri, logged):
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
    with Engine(StudyJob(spec), storage_url, tracking_uri, EngineOptions()) as engine:
        _enqueue(engine, spec, 3)
        logged.clear()
        _enqueue(engine, spec, 5)  # a second session asks for more than is left
        queued = [t.system_attrs["fixed_params"]["color_thresholds.min_saturation"]
                  for t in engine.trials()]
    assert sorted(queued) == pytest.approx([0.05, 0.1, 0.15, 0.2])
    assert logged.messages == ["the grid has 4 points and 3 are taken: queuing 1 trial(s), not 5"]


def test_summary_of_a_single_objective_study_plots_the_per_epoch_curves(tmp_path, tracking_uri):
    spec = load_spec(spec_file(tmp_path, 0.2))
    study = optuna.create_study(direction="maximize")
    key = "color_thresholds.min_saturation"
    dist = {key: optuna.distributions.FloatDistribution(0.05, 0.2)}
    for x, curve in ((0.06, {0: 10.0, 1: 12.0}), (0.12, {0: 11.0, 1: 13.0})):
        study.add_trial(optuna.trial.create_trial(params={key: x}, distributions=dist,
                                                  value=curve[1], intermediate_values=curve))
    tracker = Tracker(tracking_uri)
    with tracker.active_run(tracker.experiment_id("s"), "parent") as parent:
        summarize(study, spec, tracker, parent, None)
    plots = {a.path for a in tracker.client.list_artifacts(parent, "plots")}
    assert "plots/intermediate_values.png" in plots and "plots/pareto_front.png" not in plots
