"""``remdi-exp doctor`` and the doctor summary on ablation and study runs."""
from __future__ import annotations

import json
import signal
import textwrap

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cli_process import finish, start_cli, wait_until
from remdinet.config import ConfigError
from remdinet.exp import ablate as ablate_mod
from remdinet.exp import study as study_mod
from remdinet.exp.engine import EngineOptions
from remdinet.exp.cli import app
from remdinet.exp.doctor import EXPERIMENT, fix_overrides
from remdinet.exp.presets import load_preset
from remdinet.exp.studyspec import load_spec
from remdinet.exp.tracking import Tracker

runner = CliRunner()


def _runs(tracking_uri, experiment):
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id])


def test_fix_overrides_select_the_profile_and_the_switched_off_fixes():
    assert fix_overrides("corrected", ["mask_unfreeze", "grad_clip"]) == {
        "fixes.profile": "corrected", "fixes.disable": ["mask_unfreeze", "grad_clip"]}
    assert fix_overrides(None, []) == {}


def test_unknown_fix_or_profile_is_an_input_error_with_exit_code_2(tracking_uri):
    with pytest.raises(ConfigError, match="unknown fix"):
        fix_overrides(None, ["no_such_fix"])
    for args in (["--disable-fix", "no_such_fix"], ["--profile", "best"]):
        result = runner.invoke(app, ["--tracking-uri", tracking_uri, "doctor", "--preset", "tiny",
                                     *args])
        assert result.exit_code == 2, result.output
        assert "error:" in result.output


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_doctor_command_exits_0_on_corrected_and_tracks_the_json_report(tracking_uri):
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "--quiet", "doctor", "--preset",
                                 "tiny", "--profile", "corrected", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["flags"] == 0 and report["label"] == "corrected"
    client, runs = _runs(tracking_uri, EXPERIMENT)
    (run,) = runs
    assert run.info.run_id == report["run_id"] and run.info.status == "FINISHED"
    assert run.data.tags["doctor.flags"] == "0" and run.data.tags["doctor.flagged"] == "-"
    assert run.data.params["training.num_epochs"] == "6"  # the slice, not the preset's 4
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"doctor.json", "doctor.txt"}


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_doctor_command_exits_1_and_names_the_fix_when_one_is_switched_off(tracking_uri):
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "--quiet", "doctor", "--preset",
                                 "tiny", "--profile", "corrected", "--disable-fix", "mask_unfreeze"])
    assert result.exit_code == 1, result.output
    assert "| FLAG | mask_unfreeze" in result.stdout
    _, (run,) = _runs(tracking_uri, EXPERIMENT)
    assert run.data.tags["doctor.flagged"] == "mask_unfreeze"
    assert run.data.tags["fix.mask_unfreeze"] == "off"


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_ablate_with_doctor_tags_each_variant_run_with_its_doctor_summary(tracking_uri, tmp_path):
    base = {**load_preset("tiny"), "training.device": "cpu",
            "training.output_dir": str(tmp_path / "outputs")}
    variants = ablate_mod.build_variants(grid="none")  # all-on and all-off only
    ablate_mod.run_ablation(base, variants, "doc", f"sqlite:///{tmp_path / 'optuna.db'}",
                            tracking_uri, EngineOptions(quiet=True), grid="none",
                            doctor=True)
    _, doctors = _runs(tracking_uri, EXPERIMENT)
    doctor_runs = {r.info.run_id: r for r in doctors}
    _, runs = _runs(tracking_uri, ablate_mod.EXPERIMENT)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == len(doctor_runs) == 2
    for child in children:
        doctor_run = doctor_runs[child.data.tags["doctor.run_id"]]
        assert doctor_run.data.tags["variant"] == child.data.tags["variant"]
        assert child.data.tags["doctor.flagged"] == doctor_run.data.tags["doctor.flagged"]
        assert doctor_run.data.tags["ablation.parent_run"] == child.data.tags["mlflow.parentRunId"]
    pre_fix = next(r for r in children if r.data.tags["variant"] == "all-off (pre-fix)")
    assert "mask_unfreeze" in pre_fix.data.tags["doctor.flagged"].split(",")


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_study_run_with_doctor_tags_each_trial_run(tracking_uri, storage_url, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(f"""
        [study]
        preset = "tiny"
        n_trials = 1
        sampler = "random"
        [fixed]
        "training.output_dir" = "{tmp_path / 'outputs'}"
        "training.device" = "cpu"
        [space."color_thresholds.min_saturation"]
        type = "float"
        low = 0.05
        high = 0.2
        """))
    study_mod.run_study(load_spec(path), storage_url, tracking_uri,
                        EngineOptions(quiet=True, doctor=True))
    _, (doctor_run,) = _runs(tracking_uri, EXPERIMENT)
    _, runs = _runs(tracking_uri, "s")
    (trial,) = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert trial.data.tags["doctor.run_id"] == doctor_run.info.run_id
    assert trial.data.tags["doctor.flagged"] == doctor_run.data.tags["doctor.flagged"]


@pytest.mark.slow
def test_sigterm_stops_the_doctor_at_an_epoch_end_and_closes_its_run_killed(tmp_path,
                                                                            tracking_uri):
    proc, log = start_cli(tmp_path, tracking_uri, "doctor", "--preset", "tiny")
    wait_until(lambda: "epoch 0 [" in log.read_text(), proc, log, "the slice's first epoch")
    proc.send_signal(signal.SIGTERM)
    code, output = finish(proc, log)
    assert code == 143, output
    assert "stopped: stopped by SIGTERM at the end of epoch" in output
    assert "Traceback" not in output
    _, (run,) = _runs(tracking_uri, EXPERIMENT)
    assert run.info.status == "KILLED"
    assert run.data.tags["fail_reason"].startswith("interrupted: stopped by SIGTERM at the end of")
    assert "doctor.flags" not in run.data.tags  # a partial slice gives no report
