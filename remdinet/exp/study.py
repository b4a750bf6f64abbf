"""Optuna studies over the config; every trial is an MLflow child run of one parent run per study.

Storage: an Optuna RDB storage (default: the SQLite file ``./mlruns/optuna.db``, busy timeout 60 s),
or any SQLAlchemy URL. Running the same study name again resumes it (the objective, space and base
config must be unchanged: their fingerprint is stored with the study) and adds ``n_trials`` trials.

Everything another process needs is stored in the study itself, so :func:`run_study` can be called
by several processes on one storage: user attributes ``mlflow_parent_run_id`` (the parent run,
created once), ``mlflow_tracking_uri`` and ``spec_fingerprint``; each trial's
``mlflow_run_id``. Each trial's run carries the tags ``optuna.study_name``, ``optuna.study_id``,
``optuna.trial_number``, ``optuna.trial_id`` and ``optuna.state`` (COMPLETE / PRUNED / FAIL).

Run states: COMPLETE and PRUNED trials end FINISHED (a pruned run did what it was asked: report
its curve until stopped), FAIL ends FAILED with ``fail_reason``, an interrupt KILLED. A trial fails
without stopping the study when its sampled config is invalid or its objective is not finite
(:class:`TrialFailure`); any other error stops the study and propagates.
"""
from __future__ import annotations

import json
import math
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")  # optuna.visualization.matplotlib draws through pyplot; files only

import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from remdinet.config import ConfigError, dump_toml, resolve  # noqa: E402
from remdinet.train import Callback  # noqa: E402

from .doctor import summary_tags, tracked_doctor  # noqa: E402
from .report import to_text  # noqa: E402
from .runs import train_in_run  # noqa: E402
from .studyspec import StudySpec, StudySpecError  # noqa: E402
from .tracking import STORE_DIR, Tracker  # noqa: E402

PARENT_ATTR = "mlflow_parent_run_id"
URI_ATTR = "mlflow_tracking_uri"
FINGERPRINT_ATTR = "spec_fingerprint"
RUN_ATTR = "mlflow_run_id"
PRUNE_METRIC = "val_psnr"


class TrialFailure(RuntimeError):
    """A trial that cannot yield a value (invalid sampled config, non-finite objective)."""


def default_storage_url(base: str | Path | None = None) -> str:
    return f"sqlite:///{Path(base or Path.cwd()).resolve() / STORE_DIR / 'optuna.db'}"


def open_storage(url: str) -> optuna.storages.RDBStorage:
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        # several workers share one SQLite file: wait for the write lock instead of failing
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return optuna.storages.RDBStorage(url)


class PruningCallback(Callback):
    """Reports validation PSNR per validation epoch; raises TrialPruned when the pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str = PRUNE_METRIC):
        self.trial = trial
        self.metric = metric

    def on_epoch_end(self, trainer: Any, epoch: int, stage: int, metrics: dict[str, float]) -> None:
        if self.metric not in metrics:
            return
        value = float(metrics[self.metric])
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}: {self.metric} = {value:.3f}")


@dataclass
class StudyOutcome:
    name: str
    parent_run_id: str
    trials: pd.DataFrame
    best: list[FrozenTrial]
    best_config: str | None
    importances: dict[str, dict[str, float]]


def open_study(spec: StudySpec, storage: optuna.storages.RDBStorage) -> optuna.Study:
    """Create or load the study of ``spec``; refuse a stored study with another fingerprint."""
    study = optuna.create_study(storage=storage, study_name=spec.name, load_if_exists=True,
                                directions=list(spec.directions), pruner=spec.make_pruner())
    stored = study.user_attrs.get(FINGERPRINT_ATTR)
    if stored is not None and stored != spec.fingerprint():
        raise StudySpecError(f"study {spec.name!r} already exists in the storage with a different "
                             f"objective, search space or base config; resume it unchanged or use "
                             f"a new name ([study] name)")
    if stored is None:
        study.set_user_attr(FINGERPRINT_ATTR, spec.fingerprint())
    study.sampler = spec.make_sampler(len(study.trials))
    return study


def _parent_run(study: optuna.Study, spec: StudySpec, tracker: Tracker, exp_id: str,
                study_id: int) -> str:
    parent = study.user_attrs.get(PARENT_ATTR)
    if parent is not None:
        try:
            tracker.client.get_run(parent)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise StudySpecError(
                f"study {spec.name!r}: its MLflow parent run {parent} is not in {tracker.uri}; "
                f"use the tracking URI it was started with ({study.user_attrs.get(URI_ATTR)})"
            ) from None
        tracker.client.update_run(parent, status="RUNNING")
        return parent
    parent = tracker.create_run(exp_id, f"study {spec.name}",
                                {"kind": "study", "optuna.study_name": spec.name,
                                 "optuna.study_id": study_id, "spec": str(spec.path)})
    tracker.log_params(parent, {
        **spec.base, "study.metrics": list(spec.metrics), "study.directions": list(spec.directions),
        "study.sampler": spec.sampler, "study.pruner": spec.pruner, "study.seed": spec.seed,
        **{f"space.{k}": json.dumps(p.describe()) for k, p in spec.space.items()}})
    study.set_user_attr(PARENT_ATTR, parent)
    study.set_user_attr(URI_ATTR, tracker.uri)
    return parent


def run_study(spec: StudySpec, storage_url: str, tracking_uri: str, n_trials: int | None = None,
              timeout: float | None = None, export: str | Path | None = None,
              keep_checkpoints: bool = False, quiet: bool = False,
              log: Callable[[str], None] = print, doctor: bool = False) -> StudyOutcome:
    """Run (or resume) the study of ``spec``: ``n_trials`` more trials and/or until ``timeout``
    seconds (defaults from the spec), then summarise it (:func:`summarize`).

    ``doctor``: run the doctor slice (:mod:`.doctor`) of every trial's config before training it
    and tag the trial's run with its summary."""
    n_trials = n_trials if n_trials is not None else spec.n_trials
    timeout = timeout if timeout is not None else spec.timeout
    if n_trials is None and timeout is None:
        raise StudySpecError(f"{spec.path}: give n_trials or timeout ([study] or "
                             f"--n-trials/--timeout)")
    if n_trials is not None and n_trials < 1:
        raise StudySpecError(f"--n-trials must be >= 1, got {n_trials}")
    storage = open_storage(storage_url)
    tracker = Tracker(tracking_uri)
    study = open_study(spec, storage)
    study_id = storage.get_study_id_from_name(spec.name)
    exp_id = tracker.experiment_id(spec.name)
    run_root = Path(resolve(spec.base).training.output_dir) / "studies" / spec.name

    def objective(trial: optuna.Trial) -> float | list[float]:
        params = {key: p.suggest(trial) for key, p in spec.space.items()}
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        tags = {"optuna.study_name": spec.name, "optuna.study_id": study_id,
                "optuna.trial_number": trial.number, "optuna.trial_id": trial_id,
                "optuna.state": "RUNNING",
                "baseline": str(bool(trial.user_attrs.get("baseline"))).lower()}
        run_id = tracker.create_run(exp_id, f"trial {trial.number}", tags, parent_run_id=parent)
        trial.set_user_attr(RUN_ATTR, run_id)
        run_dir = run_root / run_id
        state, pruned = "FAIL", None
        try:
            with tracker.terminating(run_id):
                try:
                    values = _train_trial(spec, params, trial, tracker, run_id, run_dir, quiet,
                                          doctor)
                    state = "COMPLETE"
                except optuna.TrialPruned as exc:
                    state, pruned = "PRUNED", exc
                finally:
                    tracker.set_tags(run_id, {"optuna.state": state})
        finally:
            if not keep_checkpoints and (run_dir / "checkpoints").is_dir():
                shutil.rmtree(run_dir / "checkpoints")
        if pruned is not None:
            raise pruned
        log(f"trial {trial.number}: {_values_text(spec, values)}")
        return values if spec.multi_objective else values[0]

    parent = _parent_run(study, spec, tracker, exp_id, study_id)
    with tracker.terminating(parent):
        if spec.baseline and not study.trials:
            study.enqueue_trial(spec.baseline_params(), user_attrs={"baseline": True})
        study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(TrialFailure,),
                       gc_after_trial=True)
        return summarize(study, spec, tracker, parent, export, log)


def _train_trial(spec: StudySpec, params: dict[str, Any], trial: optuna.Trial, tracker: Tracker,
                 run_id: str, run_dir: Path, quiet: bool, doctor: bool = False) -> list[float]:
    try:
        cfg = resolve(spec.overrides(params))
    except ConfigError as exc:
        tracker.log_params(run_id, params)
        raise TrialFailure(f"the sampled config is invalid: {exc}") from None
    if doctor:
        tracker.set_tags(run_id, summary_tags(tracked_doctor(tracker, spec.overrides(params))))
    callbacks = [] if spec.multi_objective else [PruningCallback(trial)]
    outcome = train_in_run(tracker, run_id, cfg, callbacks=callbacks, run_dir=run_dir, quiet=quiet)
    values = []
    for metric in spec.metrics:
        key = f"final_{metric}"
        if key not in outcome.final:
            raise StudySpecError(f"objective metric {metric!r} was not computed by the run "
                                 f"(available: {', '.join(sorted(outcome.final))})")
        values.append(outcome.final[key])
    if not all(math.isfinite(v) for v in values):
        raise TrialFailure(f"objective is not finite: {dict(zip(spec.metrics, values))}")
    return values


# ------------------------------------------------------------------------------------------------
# after the run
# ------------------------------------------------------------------------------------------------

def _values_text(spec: StudySpec, values: list[float]) -> str:
    return ", ".join(f"{m} = {v:.4f}" for m, v in zip(spec.metrics, values))


def _pick(spec: StudySpec, best: list[FrozenTrial]) -> FrozenTrial:
    """The exported trial: the best one, or on a Pareto front the best by the first metric."""
    sign = 1.0 if spec.directions[0] == "maximize" else -1.0
    return max(best, key=lambda t: sign * t.values[0])


def best_config_toml(spec: StudySpec, trial: FrozenTrial) -> str:
    cfg = resolve(spec.overrides(trial.params))
    values = _values_text(spec, trial.values)
    header = (f"# best trial {trial.number} of study {spec.name!r} ({values})\n"
              f"# MLflow run {trial.user_attrs.get(RUN_ATTR)}; full resolved config\n")
    return header + dump_toml(cfg.to_flat())


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value(s), duration, params, MLflow run id."""
    df = study.trials_dataframe(attrs=("number", "state", "value" if len(study.directions) == 1
                                       else "values", "duration", "params", "user_attrs"))
    drop = [c for c in df.columns if c.startswith("user_attrs_") and c != f"user_attrs_{RUN_ATTR}"]
    df = df.drop(columns=drop).rename(columns={f"user_attrs_{RUN_ATTR}": RUN_ATTR})
    return df.rename(columns=lambda c: c[len("params_"):] if c.startswith("params_") else c)


def _importance_figure(importances: dict[str, float], title: str) -> Figure:
    fig = Figure(figsize=(7.0, 0.45 * len(importances) + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="#4c72b0")
    ax.set_xlabel("importance (normalised)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _save_pyplot(tracker: Tracker, parent: str, ax: Any, artifact: str) -> None:
    fig = ax.figure
    try:
        tracker.log_figure(parent, fig, artifact)
    finally:
        plt.close(fig)


def _importances(study: optuna.Study, spec: StudySpec, i: int) -> dict[str, float]:
    if not spec.multi_objective:
        return optuna.importance.get_param_importances(study)
    # with an explicit target the default evaluator ranks params for *low* values
    sign = -1.0 if spec.directions[i] == "maximize" else 1.0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*importances of params to achieve low")
        return optuna.importance.get_param_importances(study, target=lambda t: sign * t.values[i])


def summarize(study: optuna.Study, spec: StudySpec, tracker: Tracker, parent: str,
              export: str | Path | None, log: Callable[[str], None]) -> StudyOutcome:
    """Best trial(s), best config TOML, trials table, importances and plots on the parent run."""
    trials = trials_frame(study)
    log(to_text(trials, ".4f"))
    tracker.log_text(parent, trials.to_csv(index=False), "trials.csv")
    completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
    states = {s.name: sum(t.state == s for t in study.trials) for s in TrialState}
    tracker.log_metrics(parent, {f"trials_{k.lower()}": v for k, v in states.items() if v},
                        step=len(study.trials))
    outcome = StudyOutcome(spec.name, parent, trials, [], None, {})
    if not completed:
        log(f"study {spec.name}: no completed trial yet, so no best config")
        return outcome
    outcome.best = list(study.best_trials) if spec.multi_objective else [study.best_trial]
    chosen = _pick(spec, outcome.best)
    for t in outcome.best:
        log(f"best trial {t.number}: {_values_text(spec, t.values)}; MLflow run "
            f"{t.user_attrs.get(RUN_ATTR)}; params {t.params}")
    outcome.best_config = best_config_toml(spec, chosen)
    tracker.log_text(parent, outcome.best_config, "best_config.toml")
    tracker.set_tags(parent, {"best_trial": chosen.number,
                              "best_mlflow_run_id": chosen.user_attrs.get(RUN_ATTR)})
    tracker.log_metrics(parent, {f"best_{m}": v for m, v in zip(spec.metrics, chosen.values)},
                        step=len(study.trials))
    if export is not None:
        Path(export).parent.mkdir(parents=True, exist_ok=True)
        Path(export).write_text(outcome.best_config, encoding="utf-8")
        log(f"best config written to {export}")

    for i, metric in enumerate(spec.metrics):
        target = (lambda t, i=i: t.values[i]) if spec.multi_objective else None
        with warnings.catch_warnings():
            # optuna flags its matplotlib plots as experimental on every call; known and accepted
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            ax = optuna.visualization.matplotlib.plot_optimization_history(
                study, target=target, target_name=metric)
            _save_pyplot(tracker, parent, ax, f"plots/optimization_history_{metric}.png")
            ax = optuna.visualization.matplotlib.plot_parallel_coordinate(
                study, target=target, target_name=metric)
            # optuna's default size crams one axis per parameter into 6 inches
            ax.figure.set_size_inches(max(6.0, 1.4 * len(spec.space) + 3.0), 6.0)
            _save_pyplot(tracker, parent, ax, f"plots/parallel_coordinate_{metric}.png")
        if len(completed) < 2:
            note = (f"parameter importances of {metric} skipped: they need at least 2 completed "
                    f"trials, the study has {len(completed)}")
            log(note)
            tracker.log_text(parent, note + "\n", f"importances_{metric}.txt")
            continue
        importances = _importances(study, spec, i)
        outcome.importances[metric] = importances
        tracker.log_text(parent, json.dumps(importances, indent=2), f"importances_{metric}.json")
        figure = _importance_figure(importances, f"parameter importances ({metric})")
        tracker.log_figure(parent, figure, f"plots/importances_{metric}.png")
        log(f"importances ({metric}): " + ", ".join(f"{k} {v:.3f}" for k, v in importances.items()))
    return outcome


def load_study(name: str, storage_url: str) -> optuna.Study:
    storage = open_storage(storage_url)
    names = optuna.get_all_study_names(storage)
    if name not in names:
        raise StudySpecError(f"no study {name!r} in {storage_url}; studies there: "
                             f"{', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)
