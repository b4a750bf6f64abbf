"""What the engine runs: a :class:`Job` is an Optuna study whose trials are training runs.

A study samples its trials (:class:`remdinet.exp.study.StudyJob`); an ablation or a verification
runs fixed *cells* (:class:`CellJob`): WAITING trials, enqueued with Optuna's own
``enqueue_trial``, whose user attribute ``cell`` holds everything a worker needs to train it (a
label, a seed, config overrides, tags), so that any worker, on any machine, in any later session,
can run a cell without knowing how the job was defined.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import optuna

from remdinet.train import RUNTIME_KEYS, metric_names

CELL_ATTR = "cell"
OBJECTIVE = ("psnr", "ssim")  # what every cell reports, in this order


@dataclass
class Prepared:
    """One trial made concrete: the flat config overrides it trains, its run's name and tags,
    and whether the pruner may stop it."""
    overrides: dict[str, Any]
    run_name: str
    tags: dict[str, Any] = field(default_factory=dict)
    prunable: bool = False


class Job(ABC):
    """The parts of a study that differ between studies, ablations and verifications."""

    kind: str  # the study's "kind" user attribute
    name: str  # the Optuna study name
    experiment: str  # the MLflow experiment of its runs
    base: dict[str, Any]  # flat overrides every trial starts from
    metrics: tuple[str, ...]  # objective metrics (final_<metric> of a run), in order
    directions: tuple[str, ...]
    prune_metric: str = metric_names.VAL_PSNR
    logs_model: bool = False  # each trial run logs its best checkpoint as an MLflow model

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    @property
    def folder(self) -> str:
        """Trial folders live in ``<training.output_dir>/<folder>/<name>/trial_<N>``."""
        return f"{self.kind}s"

    def fingerprint(self) -> dict[str, Any]:
        """What must not change when the job is resumed, as a flat mapping so that a refusal can
        name the keys that differ. Runtime keys (device, loader workers, output folder) may
        differ between machines and sessions."""
        base = {f"base.{k}": v for k, v in self.base.items() if k not in RUNTIME_KEYS}
        return json.loads(json.dumps({"kind": self.kind, "metrics": list(self.metrics),
                                      "directions": list(self.directions), **base},
                                     sort_keys=True, default=str))

    @abstractmethod
    def make_sampler(self, n_existing_trials: int) -> optuna.samplers.BaseSampler: ...

    @abstractmethod
    def make_pruner(self) -> optuna.pruners.BasePruner: ...

    @abstractmethod
    def parent_run(self) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """Name, tags and params of the job's one MLflow parent run."""

    @abstractmethod
    def prepare(self, trial: optuna.Trial) -> Prepared: ...


@dataclass
class CellJob(Job):
    """A job of fixed cells (ablation, verification); see :func:`cell`."""
    kind: str
    name: str
    experiment: str
    base: dict[str, Any]
    description: str = ""
    run_params: dict[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] = OBJECTIVE
    directions: tuple[str, ...] = ("maximize", "maximize")
    trial_folder: str = ""  # default: the kind's plural

    @property
    def folder(self) -> str:
        return self.trial_folder or super().folder

    def make_sampler(self, n_existing_trials: int) -> optuna.samplers.BaseSampler:
        # cells sample nothing; the random sampler keeps TPE's bookkeeping out of the loop
        return optuna.samplers.RandomSampler(seed=n_existing_trials)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.NopPruner()

    def parent_run(self) -> tuple[str, dict[str, Any], dict[str, Any]]:
        return (f"{self.kind} {self.name}", {"kind": self.kind, "optuna.study_name": self.name},
                {**self.base, **self.run_params})

    def prepare(self, trial: optuna.Trial) -> Prepared:
        c = trial.user_attrs[CELL_ATTR]
        overrides = {**self.base, **c["overrides"], "training.seed": c["seed"]}
        tags = {**c["tags"], "cell": c["label"], "seed": c["seed"]}
        return Prepared(overrides, f"{c['label']} / seed {c['seed']}", tags)


def cell(label: str, seed: int, overrides: dict[str, Any], tags: dict[str, Any]) -> dict[str, Any]:
    """The user attribute of one cell: its label (a variant, a candidate), its seed, the config
    overrides it adds to the job's base, and the tags of its run."""
    return {"label": label, "seed": int(seed), "overrides": overrides,
            "tags": {k: str(v) for k, v in tags.items()}}


def cell_key(attrs: dict[str, Any]) -> tuple[str, int] | None:
    c = attrs.get(CELL_ATTR)
    return None if c is None else (c["label"], int(c["seed"]))
