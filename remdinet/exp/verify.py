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

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from remdinet.config import ConfigError, resolve

from .ablate import cell_records
from .engine import BASELINE_ATTR, CELL_ATTR, CellJob, Engine, EngineOptions, cell, cell_key
from .report import ablation_markdown, ablation_table, to_text
from .study import best_config_toml, load_study
from .studyspec import StudySpec

KIND = "verification"
BASELINE = "baseline"
NO_PRE_FIX = "(none)"  # a verification has no pre-fix variant
SSIM_RESOLUTION = 0.002


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
                 top: int = 3, seeds: int = 3, export: str | Path | None = None,
                 log: Callable[[str], None] = print) -> VerifyOutcome:
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
    fresh = range(first, first + seeds)
    job = CellJob(kind=KIND, name=f"{spec.name}-verify", experiment=spec.name, base=spec.base,
                  run_params={"verify.study": spec.name})
    metric = spec.metrics[0] if spec.metrics[0] in ("psnr", "ssim") else "psnr"
    start = time.perf_counter()
    with Engine(job, storage_url, tracking_uri, options, log) as engine:
        present = {cell_key(t.user_attrs) for t in engine.trials(
            (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING))}
        wanted = [(BASELINE, baseline, None), *((f"trial {t.number}", t.params, t) for t in best)]
        for label, params, trial in wanted:
            for seed in fresh:
                if (label, seed) in present:
                    continue
                tags = {"variant": label, "disabled": json.dumps(params, sort_keys=True),
                        "verify.of_trial": "-" if trial is None else trial.number}
                engine.enqueue(user_attrs={CELL_ATTR: cell(label, seed, params, tags)})
        log(f"verification {job.name}: {len(wanted)} candidate(s) x {seeds} seed(s), "
            f"{engine.pending()} cell(s) to train")
        engine.work()
        records = [r for r in cell_records(engine.trials())
                   if r["variant"] in {w[0] for w in wanted} and r["seed"] in fresh]
        table = ablation_table(records, (float("-inf"), float("inf")), BASELINE, NO_PRE_FIX,
                               ssim_resolution=SSIM_RESOLUTION)
        table = table.rename(columns={"variant": "candidate", "disabled": "params"})
        verdict = "verdict" if metric == "psnr" else "ssim_verdict"
        delta = f"d_{metric}"
        helps = table[table[verdict] == "helps"]
        winner_label = None if helps.empty else str(helps.sort_values(delta).iloc[-1]["candidate"])
        winner = next((t for label, _, t in wanted if label == winner_label), None)
        shown = ["candidate", "n_seeds", "psnr_mean", "ssim_mean", "d_psnr", "d_psnr_ci_low",
                 "d_psnr_ci_high", "p_psnr_holm", "verdict", "d_ssim", "ssim_verdict"]
        log(to_text(table[shown]))
        markdown = ablation_markdown(table.rename(columns={"candidate": "variant"}))
        engine.tracker.set_tags(engine.parent, {"mlflow.note.content": markdown,
                                                "verified_winner": winner_label or "none"})
        engine.tracker.log_text(engine.parent, table.to_csv(index=False), "verify/verify.csv")
        engine.tracker.log_table(engine.parent, table, "verify/verify_table.json")
        if winner is None:
            log(f"no candidate beats the baseline on {metric} at {seeds} fresh seed(s)"
                + ("; nothing exported" if export is not None else ""))
        else:
            log(f"verified winner: {winner_label} ({delta} "
                f"{float(helps.set_index('candidate').loc[winner_label, delta]):+.4f})")
            if export is not None:
                Path(export).parent.mkdir(parents=True, exist_ok=True)
                Path(export).write_text(best_config_toml(spec, winner), encoding="utf-8")
                log(f"verified winner's config written to {export}")
    engine.finish()
    return VerifyOutcome(job.name, engine.parent, table, winner, time.perf_counter() - start)
