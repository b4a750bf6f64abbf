"""Verified study winners: the best trials of a study and its baseline retrained on fresh seeds
as paired cells on the engine, so that a study's answer carries an interval and a verdict.

A study's best trial is the best of many noisy draws: its lead over the baseline is biased upward
(the winner's curse), and one seed says nothing about the spread. The verification (an engine job
of kind ``verification``, named ``<study>-verify``, in the study's MLflow experiment) trains the
baseline and each of the top K trials on N seeds that the study did not use (``training.seed`` +
1 ... + N), pairs each candidate with the baseline seed by seed, and applies the ablation's
statistics (:mod:`.stats`, Holm across the candidates). Running it again trains only what is
missing.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from remdinet.config import ConfigError
from remdinet.resolve import resolve

from .contest import Entry, run_contest
from .engine import BASELINE_ATTR, CellJob, EngineOptions
from .study import best_config_toml, load_study
from .studyspec import StudySpec
from .tracking import Tracker

_log = logging.getLogger(__name__)

KIND = "verification"
BASELINE = "baseline"


@dataclass
class VerifyOutcome:
    name: str
    parent_run_id: str
    table: pd.DataFrame
    winner: FrozenTrial | None
    seconds: float


def _candidates(spec: StudySpec, trials: list[FrozenTrial], top: int
                ) -> tuple[dict[str, Any], list[FrozenTrial]]:
    """The baseline's params (its trial's, or the base config's point of the space) and the top
    ``top`` completed trials by the study's first metric."""
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    base_trial = next((t for t in done if t.user_attrs.get(BASELINE_ATTR)), None)
    baseline = base_trial.params if base_trial is not None else spec.baseline_params()
    sign = 1.0 if spec.directions[0] == "maximize" else -1.0
    ranked = sorted((t for t in done if t is not base_trial), key=lambda t: -sign * t.values[0])
    if not ranked:
        raise ConfigError(f"study {spec.name!r} has no completed trial besides the baseline: "
                          f"nothing to verify")
    return baseline, ranked[:top]


def verify_study(spec: StudySpec, storage_url: str, tracking_uri: str, options: EngineOptions,
                 top: int = 3, seeds: int = 3, export: str | Path | None = None
                 ) -> VerifyOutcome:
    """Retrain the baseline and the ``top`` best trials of the study of ``spec`` on ``seeds``
    fresh seeds; the table gives each candidate's paired difference from the baseline with its
    interval and verdict. ``export``: write the verified winner's config (the candidate whose
    verdict on the study's metric is "helps", the largest mean gain among them), or say that none
    beats the baseline."""
    if top < 1 or seeds < 1:
        raise ConfigError(f"--top and --seeds must be >= 1, got {top} and {seeds}")
    study = load_study(spec.name, storage_url)
    baseline, best = _candidates(spec, study.get_trials(deepcopy=False), top)
    first = resolve(spec.base).training.seed + 1
    fresh = list(range(first, first + seeds))
    job = CellJob(kind=KIND, name=f"{spec.name}-verify", experiment=spec.name, base=spec.base,
                  run_params={"verify.study": spec.name})
    metric = spec.metrics[0] if spec.metrics[0] in ("psnr", "ssim") else "psnr"
    entries = [Entry(BASELINE, baseline, {"verify.of_trial": "-"}),
               *(Entry(f"trial {t.number}", t.params, {"verify.of_trial": t.number})
                 for t in best)]
    by_label = {f"trial {t.number}": t for t in best}
    chosen: list[FrozenTrial] = []

    def conclude(table: pd.DataFrame, tracker: Tracker, parent: str) -> None:
        verdict = "verdict" if metric == "psnr" else "ssim_verdict"
        delta = f"d_{metric}"
        helps = table[table[verdict] == "helps"]
        label = None if helps.empty else str(helps.sort_values(delta).iloc[-1]["candidate"])
        tracker.set_tags(parent, {"verified_winner": label or "none"})
        if label is None:
            _log.info(f"no candidate beats the baseline on {metric} at {seeds} fresh seed(s)"
                      + ("; nothing exported" if export is not None else ""))
            return
        chosen.append(by_label[label])
        _log.info(f"verified winner: {label} ({delta} "
                  f"{float(helps.set_index('candidate').loc[label, delta]):+.4f})")
        if export is not None:
            Path(export).parent.mkdir(parents=True, exist_ok=True)
            Path(export).write_text(best_config_toml(spec, by_label[label]), encoding="utf-8")
            _log.info(f"verified winner's config written to {export}")

    start = time.perf_counter()
    table, parent = run_contest(job, entries, fresh, storage_url, tracking_uri, options,
                                "verify", conclude)
    return VerifyOutcome(job.name, parent, table, chosen[0] if chosen else None,
                         time.perf_counter() - start)
