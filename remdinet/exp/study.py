"""Optuna studies over the config; every trial is an MLflow child run of one parent run per study.

A study is a :class:`remdinet.exp.engine.Job` whose trials are sampled: ``study run --n-trials N``
queues N WAITING trials (the first one the baseline when ``[study] baseline``) that whichever
worker of the study is free, on this machine or another, fills with the sampler's suggestions
and trains. Storage: an Optuna RDB storage (default: the SQLite file ``./mlruns/optuna.db``), or
any SQLAlchemy URL; PostgreSQL (``postgresql://user@host/db``) is the one to use when workers run
on more than one machine. Running the same study name again resumes it (the objective, space and
base config must be unchanged: their fingerprint is stored with the study, and a refusal names
the keys that differ) and adds ``n_trials`` trials.

Run states: COMPLETE and PRUNED trials end FINISHED (a pruned run did what it was asked: report
its curve until stopped), FAIL ends FAILED with ``fail_reason``; a trial stopped by a signal, or
whose worker died, ends KILLED and is retried once from its last checkpoint (see
:mod:`remdinet.exp.engine`).
"""
from __future__ import annotations

import logging
import dataclasses
import itertools
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # optuna.visualization.matplotlib draws through pyplot; files only

import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from remdinet.config import dump_toml  # noqa: E402
from remdinet.resolve import resolve  # noqa: E402
from remdinet.train import metric_names  # noqa: E402

from .engine import (BASELINE_ATTR, FAIL_ATTR, RUN_ATTR, WORKER_ATTR, Engine,  # noqa: E402
                     EngineOptions, Job, Prepared, check_workers, load_existing)
from .known_bad import announce as announce_known_bad  # noqa: E402
from .report import to_text  # noqa: E402
from .studyspec import StudySpec, StudySpecError  # noqa: E402
from .tracking import Tracker  # noqa: E402

_log = logging.getLogger(__name__)


@dataclass
class StudyJob(Job):
    """The engine's view of a study file: trials sampled from its space."""
    spec: StudySpec
    kind = "study"
    logs_model = True

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def experiment(self) -> str:
        return self.spec.name

    @property
    def base(self) -> dict[str, Any]:
        return self.spec.base

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.spec.metrics

    @property
    def directions(self) -> tuple[str, ...]:
        return self.spec.directions

    @property
    def folder(self) -> str:
        return "studies"

    @property
    def prune_metric(self) -> str:
        # the pruner compares the learning curve of what the study optimises
        return metric_names.val_metric(self.spec.metrics[0])

    def fingerprint(self) -> dict[str, Any]:
        space = {f"space.{k}": p.describe() for k, p in self.spec.space.items()}
        return {**super().fingerprint(), **json.loads(json.dumps(space, default=str))}

    def make_sampler(self, n_existing_trials: int) -> optuna.samplers.BaseSampler:
        return self.spec.make_sampler(n_existing_trials)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return self.spec.make_pruner()

    def parent_run(self) -> tuple[str, dict[str, Any], dict[str, Any]]:
        spec = self.spec
        params = {**spec.base, "study.metrics": list(spec.metrics),
                  "study.directions": list(spec.directions), "study.sampler": spec.sampler,
                  "study.pruner": spec.pruner, "study.seed": spec.seed,
                  **{f"space.{k}": json.dumps(p.describe()) for k, p in spec.space.items()}}
        return (f"study {spec.name}", {"kind": "study", "optuna.study_name": spec.name,
                                       "spec": str(spec.path)}, params)

    def prepare(self, trial: optuna.Trial) -> Prepared:
        params = {key: p.suggest(trial) for key, p in self.spec.space.items()}
        tags = {"baseline": str(bool(trial.user_attrs.get(BASELINE_ATTR))).lower()}
        return Prepared(self.spec.overrides(params), f"trial {trial.number}", tags,
                        prunable=not self.spec.multi_objective)


@dataclass
class StudyOutcome:
    name: str
    parent_run_id: str
    trials: pd.DataFrame
    best: list[FrozenTrial]
    best_config: str | None
    importances: dict[str, dict[str, float]]


def _grid_points(spec: StudySpec) -> list[dict[str, Any]]:
    return [dict(zip(spec.space, values))
            for values in itertools.product(*(p.grid() for p in spec.space.values()))]


def _taken(engine: Engine) -> list[dict[str, Any]]:
    # a WAITING trial's params are still in the system attribute enqueue_trial writes
    return [t.params or t.system_attrs.get("fixed_params", {}) for t in engine.trials()]


def _enqueue(engine: Engine, spec: StudySpec, n_trials: int | None) -> None:
    """Queue ``n_trials`` WAITING trials; the first trial of a new study with ``baseline`` is the
    base config's point of the space. A grid study queues its points (all that are left when
    ``n_trials`` is None), each with every parameter fixed, so a point runs once however many
    workers share the study."""
    points: list[dict[str, Any]] | None = None
    if spec.sampler == "grid":
        grid, taken = _grid_points(spec), _taken(engine)
        points = [p for p in grid if p not in taken]
        if n_trials is not None and n_trials > len(points):
            _log.info(f"the grid has {len(grid)} points and {len(grid) - len(points)} are taken: "
                      f"queuing {len(points)} trial(s), not {n_trials}")
        n_trials = len(points) if n_trials is None else min(n_trials, len(points))
    count = int(n_trials or 0)
    if engine.created and spec.baseline and count:
        baseline = spec.baseline_params()
        engine.enqueue(baseline, {BASELINE_ATTR: True})
        count -= 1
        if points is not None and baseline in points:
            points.remove(baseline)
    for i in range(count):
        engine.enqueue(points[i] if points is not None else None)


def run_study(spec: StudySpec, storage_url: str, tracking_uri: str, options: EngineOptions,
              n_trials: int | None = None, export: str | Path | None = None,
              pick: str | None = None) -> StudyOutcome:
    """Run (or resume) the study of ``spec`` with the workers of ``options``, then summarise it
    (:func:`summarize`; ``pick``: see :func:`check_pick`).

    ``n_trials`` (default from the spec) trials are queued and run by whichever worker of the
    study is free, on this machine or another one running the same study; ``options.join`` adds
    none and works on the queue. Without ``n_trials`` workers start sampled trials until the
    timeout (``options.timeout``, default from the spec).

    Raises :class:`.engine.Interrupted` after the summary when SIGINT/SIGTERM stopped the run,
    and :class:`.engine.WorkersFailed` when a worker process ended abnormally.
    """
    if options.join and n_trials is not None:
        raise StudySpecError("--join adds no trials to the study; leave out --n-trials")
    check_pick(spec, export, pick)
    announce_known_bad(resolve(spec.base))
    n_trials = None if options.join else (n_trials if n_trials is not None else spec.n_trials)
    if options.timeout is None and spec.timeout is not None:
        options = dataclasses.replace(options, timeout=spec.timeout)
    if not options.join and n_trials is None and options.timeout is None:
        raise StudySpecError(f"{spec.path}: give n_trials or timeout ([study] or "
                             f"--n-trials/--timeout)")
    if n_trials is not None and n_trials < 1:
        raise StudySpecError(f"--n-trials must be >= 1, got {n_trials}")
    planned = n_trials
    if spec.sampler == "grid" and not options.join:
        points = len(_grid_points(spec))
        planned = points if n_trials is None else min(n_trials, points)
    check_workers(options, planned, "trial(s)")
    with Engine(StudyJob(spec), storage_url, tracking_uri, options) as engine:
        grid = spec.sampler == "grid"
        if not options.join and (n_trials is not None or grid):
            _enqueue(engine, spec, n_trials)
        engine.work(fresh=not options.join and n_trials is None and not grid)
        outcome = summarize(engine.study, spec, engine.tracker, engine.parent, export, pick)
    engine.finish()
    return outcome


# ------------------------------------------------------------------------------------------------
# after the run
# ------------------------------------------------------------------------------------------------

def _values_text(spec: StudySpec, values: list[float]) -> str:
    return ", ".join(f"{m} = {v:.4f}" for m, v in zip(spec.metrics, values))


def check_pick(spec: StudySpec, export: str | Path | None, pick: str | None) -> None:
    """``pick``, an objective metric, chooses the trial of a Pareto front that is exported; a
    multi-objective study's ``export`` needs it (the front has no single best trial)."""
    if pick is not None and pick not in spec.metrics:
        raise StudySpecError(f"--pick {pick!r} is not an objective of study {spec.name!r} "
                             f"({', '.join(spec.metrics)})")
    if export is not None and pick is None and spec.multi_objective:
        raise StudySpecError(f"--export: study {spec.name!r} has several objectives "
                             f"({', '.join(spec.metrics)}), so its Pareto front has no single best "
                             f"trial; say which metric chooses it with --pick METRIC")


def _pick(spec: StudySpec, best: list[FrozenTrial], pick: str | None) -> FrozenTrial:
    """The best trial, or on a Pareto front its best by ``pick`` (default: the first metric)."""
    i = spec.metrics.index(pick or spec.metrics[0])
    sign = 1.0 if spec.directions[i] == "maximize" else -1.0
    return max(best, key=lambda t: sign * t.values[i])


def best_config_toml(spec: StudySpec, trial: FrozenTrial) -> str:
    cfg = resolve(spec.overrides(trial.params))
    values = _values_text(spec, trial.values)
    header = (f"# best trial {trial.number} of study {spec.name!r} ({values})\n"
              f"# MLflow run {trial.user_attrs.get(RUN_ATTR)}; full resolved config\n")
    return header + dump_toml(cfg.to_flat())


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value(s), duration, params, MLflow run id; where any
    trial has them, the worker that ran it, the trial it retries and why it failed."""
    df = study.trials_dataframe(attrs=("number", "state", "value" if len(study.directions) == 1
                                       else "values", "duration", "params", "user_attrs",
                                       "system_attrs"))
    keep = {f"user_attrs_{RUN_ATTR}": RUN_ATTR, f"user_attrs_{WORKER_ATTR}": WORKER_ATTR,
            "system_attrs_failed_trial": "retry_of", f"user_attrs_{FAIL_ATTR}": FAIL_ATTR}
    drop = [c for c in df.columns
            if c.startswith(("user_attrs_", "system_attrs_")) and c not in keep]
    df = df.drop(columns=drop).rename(columns=keep)
    if "retry_of" in df.columns:
        df["retry_of"] = df["retry_of"].astype("Int64")
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


def _plot_front_or_curves(study: optuna.Study, spec: StudySpec, tracker: Tracker,
                          parent: str) -> None:
    """The Pareto front of a multi-objective study; the learning curves (the ``val_<metric>``
    each trial reported per validation epoch, step = epoch) of a single-objective one. Optuna
    stores no intermediate values for multi-objective trials."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if spec.multi_objective:
            ax = optuna.visualization.matplotlib.plot_pareto_front(
                study, target_names=list(spec.metrics))
            _save_pyplot(tracker, parent, ax, "plots/pareto_front.png")
        elif any(t.intermediate_values for t in study.trials):
            ax = optuna.visualization.matplotlib.plot_intermediate_values(study)
            ax.set_xlabel("epoch")
            ax.set_ylabel(StudyJob(spec).prune_metric)
            _save_pyplot(tracker, parent, ax, "plots/intermediate_values.png")


def describe_best(spec: StudySpec, trial: FrozenTrial, tracker: Tracker) -> str:
    """The parent run's Overview description (Markdown): the best trial, its values, its params
    and its MLflow run and model."""
    run_id = trial.user_attrs.get(RUN_ATTR)
    models = [] if run_id is None else tracker.client.get_run(run_id).outputs.model_outputs
    lines = [f"Best trial **{trial.number}**: {_values_text(spec, trial.values)}; MLflow run "
             f"`{run_id}`" + (f", model `models:/{models[0].model_id}`" if models else "") + ".",
             "", "| param | value |", "|---|---|"]
    lines += [f"| `{k}` | {v:.6g} |" if isinstance(v, float) else f"| `{k}` | {v} |"
              for k, v in trial.params.items()]
    return "\n".join(lines)


def summarize(study: optuna.Study, spec: StudySpec, tracker: Tracker, parent: str,
              export: str | Path | None, pick: str | None = None) -> StudyOutcome:
    """Best trial(s), best config TOML, trials table, importances and plots on the parent run:
    optimisation history, parallel coordinates and importances per metric, and the Pareto front
    (multi-objective) or the per-epoch intermediate values (single objective)."""
    trials = trials_frame(study)
    _log.info(to_text(trials, ".4f"))
    tracker.log_text(parent, trials.to_csv(index=False), "trials.csv")
    completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
    states = {s.name: sum(t.state == s for t in study.trials) for s in TrialState}
    tracker.log_metrics(parent, {f"trials_{k.lower()}": v for k, v in states.items() if v},
                        step=len(study.trials))
    outcome = StudyOutcome(spec.name, parent, trials, [], None, {})
    if not completed:
        _log.info(f"study {spec.name}: no completed trial yet, so no best config")
        return outcome
    outcome.best = list(study.best_trials) if spec.multi_objective else [study.best_trial]
    chosen = _pick(spec, outcome.best, pick)
    for t in outcome.best:
        _log.info(f"best trial {t.number}: {_values_text(spec, t.values)}; MLflow run "
                  f"{t.user_attrs.get(RUN_ATTR)}; params {t.params}")
    outcome.best_config = best_config_toml(spec, chosen)
    tracker.log_text(parent, outcome.best_config, "best_config.toml")
    tracker.set_tags(parent, {"best_trial": chosen.number,
                              "best_mlflow_run_id": chosen.user_attrs.get(RUN_ATTR)})
    tracker.describe(parent, describe_best(spec, chosen, tracker))
    tracker.log_metrics(parent, {f"best_{m}": v for m, v in zip(spec.metrics, chosen.values)},
                        step=len(study.trials))
    if export is not None:
        Path(export).parent.mkdir(parents=True, exist_ok=True)
        Path(export).write_text(outcome.best_config, encoding="utf-8")
        _log.info(f"best config written to {export}")
    if spec.multi_objective:
        _log.info(f"best_config.toml: trial {chosen.number}, the front's best on "
                  f"{pick or spec.metrics[0]}")

    _plot_front_or_curves(study, spec, tracker, parent)
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
            _log.info(note)
            tracker.log_text(parent, note + "\n", f"importances_{metric}.txt")
            continue
        importances = _importances(study, spec, i)
        outcome.importances[metric] = importances
        tracker.log_text(parent, json.dumps(importances, indent=2), f"importances_{metric}.json")
        figure = _importance_figure(importances, f"parameter importances ({metric})")
        tracker.log_figure(parent, figure, f"plots/importances_{metric}.png")
        _log.info(f"importances ({metric}): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in importances.items()))
    return outcome


def load_study(name: str, storage_url: str) -> optuna.Study:
    return load_existing(name, storage_url, kind="study")
