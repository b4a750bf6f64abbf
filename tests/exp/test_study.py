"""Study machinery without training: pruning callback, storage, resume guard, trials table."""
from __future__ import annotations

import textwrap

import optuna
import pytest

from remdinet.exp.study import (PruningCallback, _load_or_create, default_storage_url, load_study,
                                open_storage, trials_frame)
from remdinet.exp.studyspec import StudySpecError, load_spec


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
    assert default_storage_url() == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'optuna.db'}"


def test_resuming_with_a_changed_space_is_refused(tmp_path, storage_url):
    storage = open_storage(storage_url)
    study = _load_or_create(load_spec(spec_file(tmp_path, 0.2)), storage)
    assert study.user_attrs["spec_fingerprint"]
    _load_or_create(load_spec(spec_file(tmp_path, 0.2)), storage)  # unchanged: fine
    with pytest.raises(StudySpecError, match="different objective, search space or base config"):
        _load_or_create(load_spec(spec_file(tmp_path, 0.3)), storage)


def test_trials_table_names_params_by_config_key_and_shows_the_run_id(tmp_path, storage_url):
    storage = open_storage(storage_url)
    study = _load_or_create(load_spec(spec_file(tmp_path, 0.2)), storage)
    space = {"color_thresholds.min_saturation": optuna.distributions.FloatDistribution(0.05, 0.2)}
    trial = study.ask(space)
    trial.set_user_attr("mlflow_run_id", "abc")
    study.tell(trial, 12.5)
    df = trials_frame(load_study("s", storage_url))
    assert list(df["mlflow_run_id"]) == ["abc"]
    assert "color_thresholds.min_saturation" in df.columns
    assert df.loc[0, "value"] == 12.5 and df.loc[0, "state"] == "COMPLETE"


def test_loading_a_missing_study_lists_the_existing_ones(tmp_path, storage_url):
    _load_or_create(load_spec(spec_file(tmp_path, 0.2, "present")), open_storage(storage_url))
    with pytest.raises(StudySpecError, match=r"no study 'absent'.*present"):
        load_study("absent", storage_url)
