"""MLflow tracking through an explicit :class:`MlflowClient`.

Nothing here touches MLflow's fluent API (``mlflow.start_run`` and its global active-run stack), so
several threads or processes can log to the same store. Every run opened with
:meth:`Tracker.active_run` ends FINISHED, FAILED or KILLED (interrupt), the last two with a
``fail_reason`` tag. A run whose process was killed before it could close it is closed KILLED by
the next :class:`Tracker` that writes, on the same host (:mod:`.owner`).

The default store is a SQLite database ``./mlruns/mlflow.db`` with artifacts under
``./mlruns/artifacts/<experiment>``; ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` select any other.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator, Mapping

import mlflow.data
import pandas as pd
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.utils import _use_tracking_uri
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_LOGGED_ARTIFACTS, MLFLOW_RUN_NOTE

from remdinet.config import ConfigError
from remdinet.processes import is_gone
from remdinet.train import Callback

from .owner import OWNER_TAG, owner_tags
from .names import check_name
from .presets import PROJECT_ROOT
from .stores import MLFLOW, check_store, is_database, mask_url, may_write, redact, sqlite_path
from .stopping import StopRequest, interrupt_reason

STORE_DIR = "mlruns"
# MLflow's limits: param values <= 6000 characters; log_batch takes <= 100 params/tags and
# <= 1000 metrics per call.
PARAM_VALUE_LIMIT = 6000
_PARAM_BATCH = 100
_METRIC_BATCH = 1000
SQLITE_LOCK_WAIT = 60  # seconds
MODEL_NAME = "model"  # the LoggedModel of a run's best checkpoint
_log = logging.getLogger(__name__)


def default_tracking_uri(base: str | Path | None = None) -> str:
    root = Path(base or Path.cwd()).resolve() / STORE_DIR
    return f"sqlite:///{root / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else the default SQLite store under ./mlruns."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def artifact_root(uri: str) -> Path | None:
    """Artifacts of a SQLite store live next to the database; servers and other databases keep
    their own configured artifact root (None)."""
    path = sqlite_path(uri)
    return None if path is None else path.parent / "artifacts"


def param_value(key: str, value: Any) -> str:
    if isinstance(value, (list, tuple)):
        text = ",".join(str(v) for v in value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    if len(text) > PARAM_VALUE_LIMIT:
        raise ConfigError(f"{key}: value has {len(text)} characters, more than MLflow's "
                          f"{PARAM_VALUE_LIMIT}-character param limit")
    return text


def git_commit() -> str | None:
    """HEAD of the source checkout, or None when the package is not inside a git work tree."""
    if shutil.which("git") is None:
        return None
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def quiet_loggers() -> None:
    for name in ("mlflow", "alembic", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # with a tracking server MLflow prints each finished run's URL to stdout, past its logger
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


class Tracker:
    """One tracking store. Cheap to create; share one per process or create one per worker.
    A database store is checked first (:func:`.stores.check_store`; ``writes`` False: a reader
    such as ``compare`` or ``ui`` does not need a writable SQLite folder). Every Tracker closes the
    runs of dead processes (:meth:`close_abandoned`); a reader only where the store may be
    written (:func:`.stores.may_write`), so a read-only copy of a store is left as it is."""

    def __init__(self, uri: str, writes: bool = True):
        self.uri = uri
        if is_database(uri):
            # a wrong password, an unknown host or a read-only store fails here, in one line
            check_store(uri, MLFLOW, writes)
        db = sqlite_path(uri)
        client_uri = uri
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
            if "?" not in uri:
                # several worker processes log to one SQLite store: wait for its write lock
                # instead of failing with "database is locked" after sqlite3's default 5 s
                client_uri = f"{uri}?timeout={SQLITE_LOCK_WAIT}"
        self.client_uri = client_uri
        try:
            self.client = MlflowClient(tracking_uri=client_uri)
        except MlflowException as exc:
            raise ConfigError(f"MLflow tracking URI {mask_url(uri)}: MLflow has no store for it "
                              f"({' '.join(redact(str(exc), uri).split())})") from None
        if writes or may_write(uri):
            self.close_abandoned()

    # -- experiments and runs ----------------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        """Id of experiment ``name``, created on first use (artifacts under the store's root)."""
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            check_name(name, "MLflow experiment name")  # it names the artifact folder
            root = artifact_root(self.uri)
            location = None if root is None else str(root / name)
            try:
                return self.client.create_experiment(name, artifact_location=location)
            except MlflowException as exc:
                # another worker created it between the lookup and the create
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = self.client.get_experiment_by_name(name)
        if exp.lifecycle_stage != "active":
            raise ConfigError(f"MLflow experiment {name!r} is deleted in {mask_url(self.uri)}; "
                              f"restore it (mlflow experiments restore) or remove it permanently")
        return exp.experiment_id

    def create_run(self, experiment_id: str, run_name: str, tags: Mapping[str, Any] | None = None,
                   parent_run_id: str | None = None) -> str:
        all_tags = {k: str(v) for k, v in (tags or {}).items()}
        commit = git_commit()
        if commit:
            all_tags["mlflow.source.git.commit"] = commit
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(experiment_id, run_name=run_name, tags=all_tags)
        return run.info.run_id

    def terminate(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status)

    def close_abandoned(self) -> None:
        """Close KILLED (tag ``fail_reason``) every RUNNING run whose owner process
        (:mod:`.owner`) lived on this host and is gone; runs of other hosts and of live processes
        are left alone."""
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        if not experiments:
            return
        for run in self.client.search_runs(experiments, "attributes.status = 'RUNNING'",
                                           max_results=50_000):
            owner = run.data.tags.get(OWNER_TAG)
            if owner is None or not is_gone(owner):
                continue
            reason = (f"abandoned: its process {owner} ended without closing the run (killed, "
                      f"e.g. by SIGKILL)")
            self.client.set_tag(run.info.run_id, "fail_reason", reason)
            self.terminate(run.info.run_id, "KILLED")
            _log.warning("closed MLflow run %s KILLED: %s", run.info.run_id, reason)

    @contextmanager
    def active_run(self, experiment_id: str, run_name: str, tags: Mapping[str, Any] | None = None,
                   parent_run_id: str | None = None) -> Iterator[str]:
        """Create a run owned by this process (tag ``worker``, :mod:`.owner`) and always
        terminate it: FINISHED, FAILED or KILLED (both with ``fail_reason``)."""
        run_id = self.create_run(experiment_id, run_name, {**(tags or {}), **owner_tags()},
                                 parent_run_id)
        with self.terminating(run_id):
            yield run_id

    @contextmanager
    def reopened(self, run_id: str) -> Iterator[str]:
        """Set a terminated run RUNNING again, owned by this process, and terminate it when the
        block ends (as :meth:`terminating`); its old ``fail_reason`` is removed."""
        self.client.update_run(run_id, status="RUNNING")
        if "fail_reason" in self.tags_of(run_id):
            self.client.delete_tag(run_id, "fail_reason")
        self.set_tags(run_id, owner_tags())
        with self.terminating(run_id):
            yield run_id

    @contextmanager
    def terminating(self, run_id: str) -> Iterator[str]:
        """Terminate an existing run when the block ends, with the status its outcome implies."""
        status = "FAILED"
        try:
            yield run_id
            status = "FINISHED"
        except KeyboardInterrupt as exc:
            status = "KILLED"
            self.client.set_tag(run_id, "fail_reason", interrupt_reason(exc))
            raise
        except BaseException as exc:
            self.client.set_tag(run_id, "fail_reason", f"{type(exc).__name__}: {exc}"[:5000])
            raise
        finally:
            self.client.set_terminated(run_id, status)

    # -- data -------------------------------------------------------------------------------
    def log_params(self, run_id: str, flat: Mapping[str, Any]) -> None:
        params = [Param(k, param_value(k, v)) for k, v in flat.items()]
        for i in range(0, len(params), _PARAM_BATCH):
            self.client.log_batch(run_id, params=params[i:i + _PARAM_BATCH])

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), _PARAM_BATCH):
            self.client.log_batch(run_id, tags=items[i:i + _PARAM_BATCH])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step)) for k, v in metrics.items()]
        for i in range(0, len(items), _METRIC_BATCH):
            self.client.log_batch(run_id, metrics=items[i:i + _METRIC_BATCH])

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        """Save a matplotlib figure as a PNG artifact ``artifact_file`` (``dir/name.png``)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            figure.savefig(path, dpi=110, bbox_inches="tight")
            self.log_file(run_id, path, _folder(artifact_file))

    def log_table(self, run_id: str, table: Any, artifact_file: str) -> None:
        """A DataFrame as ``artifact_file`` (``dir/name.json``) for MLflow's table view, replacing
        an earlier version: ``MlflowClient.log_table`` appends to an existing file, so a table
        that a rerun rebuilds from every finished cell would list each row again."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            table.to_json(path, orient="split", index=False)
            self.log_file(run_id, path, _folder(artifact_file))
        logged = json.loads(self.tags_of(run_id).get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
        entry = {"path": artifact_file, "type": "table"}
        if entry not in logged:
            self.set_tags(run_id, {MLFLOW_LOGGED_ARTIFACTS: json.dumps([*logged, entry])})

    def log_file(self, run_id: str, path: str | Path, artifact_dir: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_dir)

    def describe(self, run_id: str, text: str) -> None:
        """The run's description: the Markdown its Overview page shows (``mlflow.note.content``)."""
        self.set_tags(run_id, {MLFLOW_RUN_NOTE: text})

    def log_dataset(self, run_id: str, files: pd.DataFrame, name: str, source: str,
                    context: str) -> None:
        """A data set as the run's MLflow dataset input (the runs table's Dataset column):
        ``files`` is its file list, whose content MLflow digests, ``context`` e.g. ``train``."""
        with warnings.catch_warnings():
            # MLflow registers its local-path source twice and warns that a path is ambiguous
            warnings.filterwarnings("ignore", message="The specified dataset source can be")
            dataset = mlflow.data.from_pandas(files, source=source, name=name)
        inputs = [DatasetInput(dataset._to_mlflow_entity(),
                               [InputTag(MLFLOW_DATASET_CONTEXT, context)])]
        try:
            self.client.log_inputs(run_id, inputs)
        except MlflowException:
            # runs of one experiment starting together on a shared database (workers) may insert
            # the same dataset between MLflow's lookup and its insert (a unique-key race); the
            # second call finds the row the other run inserted, and raises if the cause was another
            self.client.log_inputs(run_id, inputs)

    def log_model(self, run_id: str, model: Any, params: Mapping[str, Any]) -> str:
        """``model`` (a torch module) as an MLflow PyTorch model of run ``run_id``: a LoggedModel
        in the run's experiment, its output, with ``params``. Returns its URI (``models:/ID``),
        which ``mlflow.pytorch.load_model`` restores."""
        import mlflow.pytorch  # torch-heavy; only runs that hand out a model need it
        import torch

        experiment = self.client.get_run(run_id).info.experiment_id
        logged = self.client.create_logged_model(
            experiment, MODEL_NAME, source_run_id=run_id,
            params={k: param_value(k, v) for k, v in params.items()})
        # pickled, not 'pt2': the model takes Python decisions on tensor values, which
        # torch.export cannot trace; MLflow writes the files through its global store URI
        with _use_tracking_uri(self.client_uri):
            info = mlflow.pytorch.log_model(model, name=MODEL_NAME, model_id=logged.model_id,
                                            run_id=run_id, serialization_format="pickle",
                                            pip_requirements=[f"torch=={torch.__version__}"])
        return info.model_uri

    def tags_of(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.tags)


class MlflowCallback(Callback):
    """Logs the trainer's per-epoch metrics to one run, step = epoch, one batch call per epoch."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker = tracker
        self.run_id = run_id

    def on_epoch_end(self, trainer: Any, epoch: int, stage: int, metrics: dict[str, float]) -> None:
        self.tracker.log_metrics(self.run_id, metrics, step=epoch)


UI_STORE_ENV = "MLFLOW_BACKEND_STORE_URI"  # read by `mlflow ui` in place of --backend-store-uri


UI_HOST = "127.0.0.1"
UI_STOP_WAIT = 10  # seconds the server's process group has to exit on SIGTERM before SIGKILL


def ui_command(uri: str, port: int, host: str = UI_HOST) -> tuple[list[str], dict[str, str]]:
    """``mlflow ui`` on ``host`` over the project's store: the command and the environment
    variables to add. The store's URI travels in the environment, not on the command line, where
    every user of the machine could read its password (``ps``)."""
    cmd = [sys.executable, "-m", "mlflow", "ui", "--host", host, "--port", str(port)]
    root = artifact_root(uri)
    if root is not None:
        cmd += ["--default-artifact-root", str(root)]
    return cmd, {UI_STORE_ENV: uri}


def serve_ui(cmd: list[str], env: dict[str, str]) -> int:
    """Run the UI server ``cmd`` in a process group of its own until it exits or this process
    gets SIGINT/SIGTERM, then stop the whole group: ``mlflow ui`` serves through uvicorn worker
    processes that outlive a signal to the first process only. Returns the server's exit code,
    or 128 + the signal that stopped it."""
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, start_new_session=True)
    try:
        with StopRequest() as stop:
            while proc.poll() is None and not stop.requested:
                stop.wait(0.5)
        return proc.returncode if stop.signum is None else 128 + stop.signum
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    with suppress(ProcessLookupError):  # the group is gone already
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(UI_STOP_WAIT)
    except subprocess.TimeoutExpired:
        pass
    # what outlived SIGTERM or the leader (uvicorn workers, a hung server): nothing stays serving
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _folder(artifact_file: str) -> str | None:
    folder = str(Path(artifact_file).parent)
    return None if folder == "." else folder
