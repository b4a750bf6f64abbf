"""A password in a database URL is never shown, stored or put on a child's command line: errors,
the ``ui`` banner and the Optuna study attribute ``mlflow_tracking_uri`` carry the masked URL."""
from __future__ import annotations

import json

import optuna
import pytest
import sqlalchemy
from mlflow.tracking import MlflowClient
from pg_server import needs_server
from typer.testing import CliRunner

from remdinet.config import ConfigError
from remdinet.exp import cli as cli_mod
from remdinet.exp.cli import app
from remdinet.exp.engine import URI_ATTR, CellJob, Engine, EngineOptions
from remdinet.exp.presets import load_preset
from remdinet.exp.stores import mask_url, redact

runner = CliRunner()
PASSWORD = "s3cr3t-Pw"
UNREACHABLE = f"postgresql://alice:{PASSWORD}@127.0.0.1:1/db"  # port 1: refused at once


def with_password(url: str) -> str:
    return sqlalchemy.engine.make_url(url).set(password=PASSWORD).render_as_string(
        hide_password=False)


def assert_clean_error_without_password(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert PASSWORD not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.mark.parametrize("url, shown", [
    ("postgresql://user:pw@host/db", "postgresql://user:***@host/db"),
    ("postgresql+psycopg://u:p%40ss@h:5433/d?sslmode=require",
     "postgresql+psycopg://u:***@h:5433/d?sslmode=require"),
    ("postgresql://u:pa/ss@h/db", "postgresql://u:***@h/db"),
    ("postgresql://h/db?sslmode=disable&password=zzz",
     "postgresql://h/db?sslmode=disable&password=***"),
    ("http://a:b@h:5000", "http://a:***@h:5000"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("sqlite:////abs/mlflow.db", "sqlite:////abs/mlflow.db"),
    ("bogus://x", "bogus://x"),
])
def test_mask_url_replaces_only_the_password(url, shown):
    assert mask_url(url) == shown


def test_redact_removes_the_password_as_written_and_as_decoded_from_a_driver_message():
    url = "postgresql://u:p%40ss@h/db"
    assert redact(f"to {url}: password p@ss (p%40ss) rejected", url) == \
        "to postgresql://u:***@h/db: password *** (***) rejected"


def test_an_optuna_storage_that_refuses_the_connection_is_one_line_naming_the_masked_url():
    result = runner.invoke(app, ["study", "show", "nothing", "--storage", UNREACHABLE])
    assert_clean_error_without_password(
        result, "Optuna storage postgresql://alice:***@127.0.0.1:1/db: cannot connect")


def test_a_tracking_database_that_refuses_the_connection_fails_at_once_before_training(tmp_path):
    result = runner.invoke(app, ["--tracking-uri", UNREACHABLE, "train", "--preset", "tiny",
                                 "--set", f"training.output_dir={tmp_path / 'out'}"])
    assert_clean_error_without_password(
        result, "MLflow tracking URI postgresql://alice:***@127.0.0.1:1/db: cannot connect")
    assert not (tmp_path / "out").exists()


def started_servers(monkeypatch) -> list:
    """The (command, environment) of each MLflow UI server ``ui`` starts, none started."""
    started = []
    monkeypatch.setattr(cli_mod, "serve_ui", lambda cmd, env: (
        started.append((cmd, env)), 0)[1])
    return started


def test_ui_over_a_store_it_cannot_reach_says_so_without_the_password_and_starts_nothing(
        monkeypatch):
    started = started_servers(monkeypatch)
    result = runner.invoke(app, ["--tracking-uri", UNREACHABLE, "ui", "--port", "5999"])
    assert_clean_error_without_password(
        result, "MLflow tracking URI postgresql://alice:***@127.0.0.1:1/db: cannot connect")
    assert started == []


# -- against the test PostgreSQL server --------------------------------------------------------
@pytest.mark.postgres
@needs_server
def test_ui_keeps_the_password_off_the_child_command_line_and_out_of_the_banner(pg_database,
                                                                               monkeypatch):
    tracking = with_password(pg_database("mlflow"))
    started = started_servers(monkeypatch)
    result = runner.invoke(app, ["--tracking-uri", tracking, "ui", "--port", "5999"])
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert f"over {mask_url(tracking)}" in result.output
    ((cmd, env),) = started
    assert PASSWORD not in " ".join(cmd)
    assert env["MLFLOW_BACKEND_STORE_URI"] == tracking  # the child reads it from there


@pytest.mark.postgres
@needs_server
def test_show_of_an_unknown_study_masks_the_storage_password(pg_database):
    storage = with_password(pg_database("optuna"))
    result = runner.invoke(app, ["study", "show", "nothing", "--storage", storage])
    assert_clean_error_without_password(result, "no study 'nothing' in ", mask_url(storage))


@pytest.mark.postgres
@needs_server
def test_compare_of_an_unknown_experiment_masks_the_tracking_password(pg_database):
    tracking = with_password(pg_database("mlflow"))
    result = runner.invoke(app, ["--tracking-uri", tracking, "compare", "nothing"])
    assert_clean_error_without_password(result, "no MLflow experiment 'nothing' in ",
                                        mask_url(tracking))


@pytest.mark.postgres
@needs_server
def test_the_study_stores_the_tracking_uri_masked_and_a_wrong_one_is_told_without_password(
        tmp_path, pg_database, storage_url):
    tracking = with_password(pg_database("mlflow"))
    job = CellJob(kind="ablation", name="secret-test", experiment="secret-test",
                  base={**load_preset("tiny"), "training.output_dir": str(tmp_path / "out")})
    engine = Engine(job, storage_url, tracking, EngineOptions())
    study = optuna.load_study(study_name=job.name, storage=storage_url)
    assert study.user_attrs[URI_ATTR] == mask_url(tracking)
    assert PASSWORD not in json.dumps(study.user_attrs)
    parent = MlflowClient(tracking).get_run(engine.parent)
    assert PASSWORD not in json.dumps({**parent.data.params, **parent.data.tags})

    with pytest.raises(ConfigError) as refused:  # the same study with another tracking store
        Engine(job, storage_url, f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}",
               EngineOptions())
    assert f"use the tracking URI it was started with ({mask_url(tracking)})" in str(refused.value)
    assert PASSWORD not in str(refused.value)
