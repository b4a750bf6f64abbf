"""Candidates against a baseline on shared seeds: the cells, their training and the paired
table that ``study verify`` and ``versus`` share.

Each (candidate, seed) is a cell of a :class:`~.engine.CellJob`; the first entry is the baseline,
and every other entry is compared with it seed by seed (the ablation's statistics, Holm across
the candidates). Cells already finished, running or waiting are not enqueued again, so running
a contest again trains only what is missing.
"""
from __future__ import annotations

import logging
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pandas as pd
from optuna.trial import TrialState

from .ablate import cell_records
from .engine import CELL_ATTR, CellJob, Engine, EngineOptions, cell, cell_key, check_workers
from .report import ablation_markdown, ablation_table, to_text
from .tracking import Tracker

_log = logging.getLogger(__name__)

NO_PRE_FIX = "(none)"  # a contest has no pre-fix variant
SSIM_RESOLUTION = 0.002
SHOWN = ["candidate", "n_seeds", "psnr_mean", "ssim_mean", "d_psnr", "d_psnr_ci_low",
         "d_psnr_ci_high", "p_psnr_holm", "verdict", "d_ssim", "d_ssim_ci_low", "d_ssim_ci_high",
         "ssim_verdict"]


@dataclass(frozen=True)
class Entry:
    """One candidate: its label, the flat overrides it adds to the job's base, its runs' tags."""
    label: str
    overrides: dict[str, Any]
    tags: dict[str, Any] = field(default_factory=dict)


def run_contest(job: CellJob, entries: Sequence[Entry], seeds: Sequence[int], storage_url: str,
                tracking_uri: str, options: EngineOptions,
                artifact: str, conclude: Callable[[pd.DataFrame, Tracker, str], None] | None = None
                ) -> tuple[pd.DataFrame, str]:
    """Train every missing (entry, seed) cell and return the table (one row per entry, the first
    entry the reference) and the job's parent run id. The table is printed and logged on the
    parent run (its description, ``<artifact>/<artifact>.csv`` and an MLflow table); ``conclude`` adds
    what the caller draws from it while the store is still open."""
    labels = [e.label for e in entries]
    check_workers(options, len(entries) * len(seeds), "cell(s)")
    with Engine(job, storage_url, tracking_uri, options) as engine:
        present = {cell_key(t.user_attrs) for t in engine.trials(
            (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING))}
        for e in entries:
            for seed in seeds:
                if (e.label, seed) in present:
                    continue
                tags = {"variant": e.label, "disabled": json.dumps(e.overrides, sort_keys=True,
                                                                   default=str), **e.tags}
                engine.enqueue(user_attrs={CELL_ATTR: cell(e.label, seed, e.overrides, tags)})
        _log.info(f"{job.kind} {job.name}: {len(entries)} candidate(s) x {len(seeds)} seed(s), "
                  f"{engine.pending()} cell(s) to train")
        engine.work()
        records = [r for r in cell_records(engine.trials())
                   if r["variant"] in labels and r["seed"] in set(seeds)]
        table = ablation_table(records, (float("-inf"), float("inf")), labels[0], NO_PRE_FIX,
                               ssim_resolution=SSIM_RESOLUTION)
        table = table.rename(columns={"variant": "candidate", "disabled": "params"})
        _log.info(to_text(table[SHOWN]))
        markdown = ablation_markdown(table.rename(columns={"candidate": "variant"}))
        engine.tracker.set_tags(engine.parent, {"mlflow.note.content": markdown})
        engine.tracker.log_text(engine.parent, table.to_csv(index=False),
                                f"{artifact}/{artifact}.csv")
        engine.tracker.log_table(engine.parent, table, f"{artifact}/{artifact}_table.json")
        if conclude is not None:
            conclude(table, engine.tracker, engine.parent)
    engine.finish()
    return table, engine.parent
