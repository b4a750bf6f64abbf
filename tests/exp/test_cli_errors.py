"""Input errors that used to end in a traceback are one line naming the thing, exit code 2, and
leave no FAILED MLflow run behind: a bad device, a damaged or malicious checkpoint, unwritable
output or tracking folders, an unknown tracking URI scheme, a missing data folder, and one
database given as both the Optuna storage and the MLflow store."""
from __future__ import annotations

import os
import pickle
import textwrap

import optuna
import pytest
import sqlalchemy
import torch
from mlflow.tracking import MlflowClient
from pg_server import needs_server
from typer.testing import CliRunner

from remdinet.exp.cli import app

runner = CliRunner()
needs_permissions = pytest.mark.skipif(
    os.geteuid() == 0, reason="root writes into read-only folders: chmod cannot make one here "
                              "(the blocked-by-a-file cases check the same error)")


def assert_clean_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.count("error: ") == 1, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def train(uri, tmp_path, *args, output_dir=None):
    out = output_dir or tmp_path / "out"
    return runner.invoke(app, [*(["--tracking-uri", uri] if uri else []), "--quiet", *args,
                               "train", "--preset", "tiny",
                               "--set", f"training.output_dir={out}"])


def runs_in(uri):
    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids) if ids else []


def test_an_unknown_device_names_training_device_and_leaves_no_run(tracking_uri, tmp_path):
    result = train(tracking_uri, tmp_path, "--device", "tpu9")
    assert_clean_error(result, "training.device: 'tpu9' is not auto, cpu, cuda or cuda:N")
    assert runs_in(tracking_uri) == []


def test_a_missing_data_folder_fails_before_the_run_is_created(tracking_uri, tmp_path):
    missing = tmp_path / "no-such-data"
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "train", "--preset", "tiny",
                                 "--data", str(missing),
                                 "--set", f"training.output_dir={tmp_path / 'out'}"])
    assert_clean_error(result, str(missing))
    assert runs_in(tracking_uri) == []


def test_an_output_dir_blocked_by_a_file_names_the_key_and_leaves_no_run(tracking_uri, tmp_path):
    (tmp_path / "blocker").write_text("a file, not a folder")
    result = train(tracking_uri, tmp_path, output_dir=tmp_path / "blocker" / "out")
    assert_clean_error(result, "training.output_dir: ", "is not a writable folder")
    assert runs_in(tracking_uri) == []


@needs_permissions
def test_a_read_only_output_dir_names_the_key_and_leaves_no_run(tracking_uri, tmp_path):
    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o555)
    result = train(tracking_uri, tmp_path, output_dir=out)
    assert_clean_error(result, f"training.output_dir: {out} is not a writable folder")
    assert runs_in(tracking_uri) == []


def test_a_default_store_folder_blocked_by_a_file_names_the_tracking_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlruns").write_text("a file where the store folder belongs")
    result = train(None, tmp_path)
    assert_clean_error(result, "MLflow tracking URI sqlite:///", "mlruns is not a writable folder")


@needs_permissions
def test_a_read_only_mlruns_names_the_tracking_store(tmp_path):
    store = tmp_path / "mlruns"
    store.mkdir()
    store.chmod(0o555)
    result = train(f"sqlite:///{store / 'mlflow.db'}", tmp_path)
    assert_clean_error(result, "MLflow tracking URI", f"{store} is not a writable folder")


def test_a_tracking_uri_scheme_mlflow_does_not_know_is_one_line(tmp_path):
    result = train("bogus://x", tmp_path)
    assert_clean_error(result, "MLflow tracking URI bogus://x: MLflow has no store for it")


def test_a_storage_url_no_database_driver_knows_is_one_line():
    result = runner.invoke(app, ["study", "show", "s", "--storage", "bogus://x"])
    assert_clean_error(result, "Optuna storage bogus://x: not a database URL that can be opened")


# -- evaluate ------------------------------------------------------------------------------------
@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    return folder


def evaluate(checkpoint, images):
    return runner.invoke(app, ["evaluate", "--checkpoint", str(checkpoint), "--data", str(images),
                               "--layout", "plain"])


def test_a_truncated_checkpoint_is_named(tmp_path, images):
    whole = tmp_path / "whole.pth"
    torch.save({"model": {"w": torch.zeros(64, 64)}}, whole)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert_clean_error(evaluate(cut, images), f"{cut}: not a loadable checkpoint")


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_checkpoint_whose_pickle_runs_code_is_refused_unexecuted_and_named(tmp_path, images,
                                                                            zip_format):
    marker = tmp_path / "it-ran"
    evil = tmp_path / "evil.pth"
    torch.save({"model": RunsCode(marker)}, evil, _use_new_zipfile_serialization=zip_format,
               pickle_protocol=pickle.DEFAULT_PROTOCOL)
    assert_clean_error(evaluate(evil, images), f"{evil}: not a loadable checkpoint",
                       "refused by the weights-only loader")
    assert not marker.exists()


# -- one database for both stores ------------------------------------------------------------------
def study_spec(tmp_path):
    spec = tmp_path / "one_db.toml"
    spec.write_text(textwrap.dedent("""\
        [study]
        preset = "tiny"
        n_trials = 1
        [space."color_thresholds.min_saturation"]
        type = "float"
        low = 0.05
        high = 0.2
        """))
    return spec


def test_one_sqlite_file_as_storage_and_tracking_store_is_refused_before_creating_it(tmp_path):
    both = f"sqlite:///{tmp_path / 'stores' / 'both.db'}"
    result = runner.invoke(app, ["--tracking-uri", both, "study", "run", str(study_spec(tmp_path)),
                                 "--storage", both,
                                 "--set", f"training.output_dir={tmp_path / 'out'}"])
    assert_clean_error(result, "are one database; use two databases")
    assert not (tmp_path / "stores").exists()


def test_an_optuna_database_given_as_the_tracking_store_is_refused_naming_what_it_holds(
        tmp_path, storage_url):
    (tmp_path / "mlruns").mkdir()
    optuna.storages.RDBStorage(storage_url)  # creates Optuna's tables
    result = runner.invoke(app, ["--tracking-uri", storage_url, "compare", "train"])
    assert_clean_error(result, f"MLflow tracking URI {storage_url}: this database holds an "
                               f"Optuna storage", "need a database each")


def test_an_mlflow_database_given_as_the_storage_is_refused_naming_what_it_holds(tracking_uri):
    MlflowClient(tracking_uri).search_experiments()  # creates MLflow's tables
    result = runner.invoke(app, ["study", "show", "s", "--storage", tracking_uri])
    assert_clean_error(result, f"Optuna storage {tracking_uri}: this database holds an MLflow "
                               f"tracking store")


@pytest.mark.postgres
@needs_server
def test_one_postgresql_database_spelled_two_ways_is_refused_before_any_table_exists(
        tmp_path, pg_database):
    url = pg_database("both")
    other_spelling = url.replace("postgresql://", "postgresql+psycopg://").replace(
        "@127.0.0.1:", "@localhost:")
    result = runner.invoke(app, ["--tracking-uri", url, "ablate", "--preset", "tiny",
                                 "--storage", other_spelling,
                                 "--set", f"training.output_dir={tmp_path / 'out'}"])
    assert_clean_error(result, "are one database; use two databases")
    engine = sqlalchemy.create_engine(url)
    try:
        assert sqlalchemy.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
