"""End to end on the tiny preset: ablation and study through the CLI into temporary stores."""
from __future__ import annotations

import math
import textwrap

import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from data_helpers import pair_tree
from remdinet.config import Config
from remdinet.data import ensure_dataset
from remdinet.exp.cli import app
from remdinet.exp.presets import load_preset
from remdinet.exp.engine import PARENT_ATTR, RUN_ATTR
from remdinet.resolve import resolve

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
runner = CliRunner()
EPOCHS = resolve(load_preset("tiny")).training.num_epochs


def cli(tracking_uri, tmp_path, *args):
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "--quiet", *args,
                                 "--set", f"training.output_dir={tmp_path / 'outputs'}"])
    assert result.exit_code == 0, result.output
    return result


def runs_of(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000)


def test_ablation_of_one_fix_logs_parent_children_epoch_metrics_and_table(tracking_uri, tmp_path):
    cli(tracking_uri, tmp_path, "ablate", "--preset", "tiny", "--disable-fix", "mask_unfreeze")
    client = MlflowClient(tracking_uri)
    runs = runs_of(client, "ablations")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    parent = parents[0].info.run_id
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent}
    assert sorted(r.data.tags["variant"] for r in children) == \
        sorted(["all-on", "all-off (pre-fix)", "-mask_unfreeze"])
    n_params = len(resolve().to_flat())
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["seed"] == "42"
        assert len(run.data.params) == n_params
        for metric in ("train_loss", "val_psnr"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
            assert sorted(steps) == list(range(EPOCHS)), metric
        assert {"final_psnr", "final_ssim"} <= set(run.data.metrics)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
        assert "samples/grid.png" in artifacts
    ablated = next(r for r in children if r.data.tags["variant"] == "-mask_unfreeze")
    assert ablated.data.tags["fix.mask_unfreeze"] == "off"
    assert ablated.data.tags["fix.color_clamps"] == "on"
    assert ablated.data.params["optim.grad_clip"] == "0.25"  # the fix's pre-fix value
    assert {a.path for a in client.list_artifacts(parent, "ablation")} >= {
        "ablation/ablation.csv", "ablation/ablation.md", "ablation/ablation.png"}
    table = pd.read_csv(client.download_artifacts(parent, "ablation/ablation.csv", str(tmp_path)))
    assert list(table["variant"]) == ["all-on", "all-off (pre-fix)", "-mask_unfreeze"]
    assert table.loc[0, "d_psnr"] == 0.0
    assert set(table["verdict"]) == {"reference", "1 seed: no interval"}
    assert set(table["band_position"]) <= {"below", "inside", "above"}

    out = tmp_path / "compare.md"
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "compare", "ablations",
                                 "--filter-tag", "variant=-mask_unfreeze", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert len(lines) == 3  # header, rule, the one matching run
    assert ablated.info.run_id in lines[2]


def test_train_then_evaluate_through_the_cli(tracking_uri, tmp_path):
    result = cli(tracking_uri, tmp_path, "train", "--preset", "tiny")
    (run,) = runs_of(MlflowClient(tracking_uri), "train")
    assert run.info.run_id in result.output and run.info.status == "FINISHED"
    assert {"final_psnr", "final_ssim", "best_val_psnr"} <= set(run.data.metrics)
    checkpoint = run.data.tags["best_checkpoint"]
    assert f"final_psnr **{run.data.metrics['final_psnr']:.4f}**" in \
        run.data.tags["mlflow.note.content"]  # the run's Overview description
    (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
    assert dataset.name.startswith("remdinet:synthetic-") and dataset.digest
    data_root = ensure_dataset(resolve(load_preset("tiny")).synthetic)
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "--checkpoint", checkpoint, "--data", str(data_root),
                                 "--split", "val", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "mean: psnr" in result.output
    assert (out / "metrics.csv").is_file()


def write_spec(tmp_path, name, n_trials, pruner_lines):
    path = tmp_path / f"{name}.toml"
    head = textwrap.dedent(f"""
        [study]
        preset = "tiny"
        n_trials = {n_trials}
        sampler = "random"
        seed = 3
        """)
    space = textwrap.dedent("""
        [space."color_thresholds.min_saturation"]
        type = "float"
        low = 0.05
        high = 0.2
        """)
    path.write_text(head + textwrap.dedent(pruner_lines) + space)
    return path


def study_runs(client, name):
    runs = runs_of(client, name)
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def test_study_trials_match_mlflow_child_runs_and_resume_adds_trials(tracking_uri, storage_url,
                                                                     tmp_path):
    spec = write_spec(tmp_path, "tiny_study", 3, 'pruner = "none"\n')
    export = tmp_path / "best.toml"
    cli(tracking_uri, tmp_path, "study", "run", str(spec), "--storage", storage_url,
        "--export", str(export))
    study = optuna.load_study(study_name="tiny_study", storage=storage_url)
    assert len(study.trials) == 3
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    client = MlflowClient(tracking_uri)
    children = study_runs(client, "tiny_study")
    assert len(children) == 3
    parent = study.user_attrs[PARENT_ATTR]
    by_run = {r.info.run_id: r for r in children}
    storage = optuna.storages.RDBStorage(storage_url)
    study_id = storage.get_study_id_from_name("tiny_study")
    for trial in study.trials:
        run = by_run[trial.user_attrs[RUN_ATTR]]
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent
        assert tags["optuna.trial_number"] == str(trial.number)
        assert tags["optuna.trial_id"] == str(
            storage.get_trial_id_from_study_id_trial_number(study_id, trial.number))
        assert tags["optuna.state"] == "COMPLETE" and run.info.status == "FINISHED"
        assert run.data.metrics["final_psnr"] == pytest.approx(trial.value)
        assert float(run.data.params["color_thresholds.min_saturation"]) == \
            pytest.approx(trial.params["color_thresholds.min_saturation"])
        assert "best_checkpoint" not in tags  # its checkpoints were deleted with the trial
        assert len(run.outputs.model_outputs) == 1  # the model stays, as an MLflow model
    best_run = study.best_trial.user_attrs[RUN_ATTR]
    note = client.get_run(parent).data.tags["mlflow.note.content"]
    assert f"Best trial **{study.best_trial.number}**" in note and best_run in note
    assert "`color_thresholds.min_saturation`" in note
    assert by_run[best_run].outputs.model_outputs[0].model_id in note
    exported = export.read_text()
    assert exported.startswith(f"# best trial {study.best_trial.number} of study 'tiny_study'")
    assert Config.from_toml(exported).color_thresholds.min_saturation == \
        pytest.approx(study.best_params["color_thresholds.min_saturation"])
    parent_artifacts = {a.path for a in client.list_artifacts(parent)}
    assert {"best_config.toml", "trials.csv", "plots"} <= parent_artifacts
    plots = {a.path for a in client.list_artifacts(parent, "plots")}
    assert {"plots/optimization_history_psnr.png", "plots/parallel_coordinate_psnr.png",
            "plots/importances_psnr.png"} <= plots

    cli(tracking_uri, tmp_path, "study", "run", str(spec), "--storage", storage_url,
        "--n-trials", "1")
    study = optuna.load_study(study_name="tiny_study", storage=storage_url)
    assert len(study.trials) == 4
    assert study.user_attrs[PARENT_ATTR] == parent
    children = study_runs(client, "tiny_study")
    assert len(children) == 4
    assert {r.info.run_id for r in children} == {t.user_attrs[RUN_ATTR] for t in study.trials}
    assert client.get_run(parent).info.status == "FINISHED"


def test_nsga2_multi_objective_study_logs_its_pareto_front_and_exports_the_picked_trial(
        tracking_uri, storage_url, tmp_path):
    spec = tmp_path / "front.toml"
    spec.write_text(textwrap.dedent("""
        [study]
        preset = "tiny"
        metrics = ["psnr", "ssim"]
        n_trials = 2
        sampler = "nsga2"
        [space."color_thresholds.min_saturation"]
        type = "float"
        low = 0.05
        high = 0.2
        """))
    export = tmp_path / "best.toml"
    cli(tracking_uri, tmp_path, "study", "run", str(spec), "--storage", storage_url,
        "--export", str(export), "--pick", "ssim")
    study = optuna.load_study(study_name="front", storage=storage_url)
    assert study.metric_names == ["psnr", "ssim"]
    best = max(study.best_trials, key=lambda t: t.values[1])
    assert export.read_text().startswith(f"# best trial {best.number} of study 'front'")
    plots = {a.path for a in MlflowClient(tracking_uri).list_artifacts(
        study.user_attrs[PARENT_ATTR], "plots")}
    assert "plots/pareto_front.png" in plots


def test_pruned_trial_is_pruned_in_optuna_and_mlflow(tracking_uri, storage_url, tmp_path):
    # a threshold no PSNR reaches: the first reported validation epoch prunes the trial
    spec = write_spec(tmp_path, "pruned_study", 1, """
        pruner = "threshold"
        [study.pruner_options]
        lower = 1000.0
        """)
    result = cli(tracking_uri, tmp_path, "study", "run", str(spec), "--storage", storage_url)
    assert "no completed trial" in result.output
    study = optuna.load_study(study_name="pruned_study", storage=storage_url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED]
    (run,) = study_runs(MlflowClient(tracking_uri), "pruned_study")
    assert run.info.run_id == study.trials[0].user_attrs[RUN_ATTR]
    assert run.data.tags["optuna.state"] == "PRUNED"
    assert run.info.status == "FINISHED"
    # the curve up to the pruning epoch was logged live
    history = MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "val_psnr")
    assert [m.step for m in history] == [0]


def test_trial_with_an_invalid_sampled_config_fails_in_both_and_the_study_goes_on(
        tracking_uri, storage_url, tmp_path):
    # corners (8 or 12 with 4 heads) are valid, so the spec loads; 10 is not divisible by 4
    spec = tmp_path / "divisible.toml"
    spec.write_text(textwrap.dedent("""
        [study]
        preset = "tiny"
        n_trials = 3
        sampler = "grid"
        pruner = "none"
        [space."model.decoder_dim"]
        type = "int"
        low = 8
        high = 12
        step = 2
        [space."model.decoder_heads"]
        type = "categorical"
        choices = [4]
        """))
    cli(tracking_uri, tmp_path, "study", "run", str(spec), "--storage", storage_url)
    study = optuna.load_study(study_name="divisible", storage=storage_url)
    states = {t.params["model.decoder_dim"]: t.state for t in study.trials}
    assert states == {8: optuna.trial.TrialState.COMPLETE, 10: optuna.trial.TrialState.FAIL,
                      12: optuna.trial.TrialState.COMPLETE}
    failed = next(t for t in study.trials if t.state == optuna.trial.TrialState.FAIL)
    run = MlflowClient(tracking_uri).get_run(failed.user_attrs[RUN_ATTR])
    assert run.info.status == "FAILED"
    assert run.data.tags["optuna.state"] == "FAIL"
    assert "decoder_dim must be divisible by model.decoder_heads" in run.data.tags["fail_reason"]


def test_recipe_preset_trains_on_a_lol_layout_folder(tracking_uri, tmp_path):
    root = tmp_path / "LOL"
    pair_tree(root, "our485/low", "our485/high", ["2.png", "5.png", "9.png", "12.png"], 72, 72)
    pair_tree(root, "eval15/low", "eval15/high", ["1.png"], 72, 72, seed=50)
    cli(tracking_uri, tmp_path, "train", "--preset", "recipe", "--data", str(root),
        "--set", "training.num_epochs=2", "--set", "training.val_dense_epochs=2")
    (run,) = runs_of(MlflowClient(tracking_uri), "train")
    assert run.info.status == "FINISHED"
    assert run.data.params["fixes.profile"] == "corrected"
    assert run.data.params["data.layout"] in ("auto", "lol_v1")
    assert math.isfinite(run.data.metrics["val_psnr"])
