"""Fix ablations: variants (fix sets) x seeds as cells of one job on the engine
(:mod:`.engine`), each cell an MLflow child run of the ablation's parent run, then the paired
statistics, table and forest plot of :mod:`.report`.

A variant is a :class:`remdinet.fixes.FixSet` with its label. Its config is
``resolve(fix-set overrides + the run's explicit overrides)``, so the pre-fix value of a setting a
switched-off fix changed applies unless the user set that key explicitly (remdinet.resolve.resolve).
The all-fixes-on and all-fixes-off (pre-fix) variants always run: the deltas are taken against them,
paired by seed (the same seed is the same initialisation and data order).

An ablation lives in the Optuna storage under its name (kind ``ablation``): running it again
trains only the cells (variant, seed) that have not finished, and the table is rebuilt from every
finished cell; a changed base config is refused, naming the keys that differ.
"""
from __future__ import annotations

import logging
import itertools
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
import pandas as pd
from optuna.trial import TrialState

from remdinet.config import Config, ConfigError
from remdinet.fixes import FIXES, FixSet, expand
from remdinet.resolve import resolve

from .doctor import summary_tags, tracked_doctor
from .engine import (CELL_ATTR, RUN_ATTR, CellJob, Engine, EngineOptions, cell, cell_key,
                     check_workers, load_existing)
from .known_bad import announce as announce_known_bad
from .names import check_name
from .stats import Paired, stop_reason
from .report import ablation_chart, ablation_markdown, ablation_table, to_text
from .tracking import Tracker

_log = logging.getLogger(__name__)

GRIDS = ("leave-one-out", "full", "none")
EXPERIMENT = "ablations"
ALL_ON = FixSet.all_on().label()
PRE_FIX = FixSet.all_off().label()
REFERENCE_PSNR = 18.5
REFERENCE_BAND = (18.0, 19.0)
RESOLUTION = 0.1  # dB: an interval narrower than this around 0 means "no effect"
KIND = "ablation"


@dataclass(frozen=True)
class Variant:
    label: str
    fixset: FixSet

    @property
    def disabled(self) -> str:
        """Switched-off fixes (whole fixes, or single sub-switches), as in the config."""
        return ", ".join(self.fixset.to_overrides()["fixes.disable"]) or "-"


@dataclass
class AblationResult:
    name: str
    parent_run_id: str
    table: pd.DataFrame
    runs: pd.DataFrame
    seconds: float
    trained: int  # cells trained by this invocation


@dataclass(frozen=True)
class Seeds:
    """How many seeds each variant gets: ``count`` at first; with ``until_resolved``, one more
    per round for every variant whose interval still contains 0 and is wider than
    ``resolution``, up to ``max_seeds``."""
    count: int = 1
    until_resolved: bool = False
    max_seeds: int = 10
    resolution: float = RESOLUTION

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"--seeds must be >= 1, got {self.count}")
        if self.until_resolved and self.max_seeds < max(self.count, 2):
            raise ConfigError(f"--max-seeds ({self.max_seeds}) must be >= --seeds "
                              f"({self.count}) and >= 2: an interval needs two seeds")
        if self.resolution <= 0:
            raise ConfigError(f"--resolution must be > 0 dB, got {self.resolution}")


def build_variants(disable: Sequence[str] = (), grid: str = "leave-one-out",
                   include_corrected: bool = False) -> list[Variant]:
    """The variants of an ablation; always starts with all-on and all-off (pre-fix).

    ``leave-one-out``: all-on without each requested fix (every fix when ``disable`` is empty);
    ``full``: all-on without every non-empty subset of them; ``none``: all-on without all of
    ``disable`` at once. Names may be fixes or ``fix.sub`` sub-switches; an unknown name raises
    listing the valid ones.
    """
    if grid not in GRIDS:
        raise ConfigError(f"unknown grid {grid!r}; valid: {', '.join(GRIDS)}")
    names = list(dict.fromkeys(disable))
    for name in names:
        expand(name)
    all_on = FixSet.all_on()
    sets = [all_on, FixSet.all_off()]
    pool = names or list(FIXES)
    if grid == "leave-one-out":
        sets += [all_on.without(n) for n in pool]
    elif grid == "full":
        sets += [all_on.without(*combo) for r in range(1, len(pool) + 1)
                 for combo in itertools.combinations(pool, r)]
    elif names:
        sets.append(all_on.without(*names))
    if include_corrected:
        sets.append(FixSet.corrected())
    return [Variant(fs.label(), fs) for fs in dict.fromkeys(sets)]


def fix_controlled_keys() -> set[str]:
    return {key for fix in FIXES.values() for sub in fix.subs for key in sub.config_values}


def variant_configs(variants: Sequence[Variant], base: dict[str, Any], seeds: int
                    ) -> dict[tuple[str, int], Config]:
    """Resolve every variant x seed before anything trains, so a bad override fails at once."""
    given = sorted(k for k in base if k.startswith("fixes."))
    if given:
        raise ConfigError(f"ablate sets the fix set of each variant itself; remove "
                          f"{', '.join(given)} from the preset/--config/--set (use --disable-fix "
                          f"/ --include-corrected)")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    first = resolve(base).training.seed
    out = {}
    for v in variants:
        for seed in range(first, first + seeds):
            out[(v.label, seed)] = resolve({**v.fixset.to_overrides(), **base,
                                            "training.seed": seed})
    return out


def ablation_name(preset: str | None, grid: str, disable: Sequence[str] = (),
                  include_corrected: bool = False) -> str:
    """The default name of an ablation: what defines its variants (``quick-leave-one-out``,
    ``quick-none-mask_unfreeze``), so that the same command resumes the same ablation."""
    stem = Path(preset).stem if preset else "default"
    parts = [stem, grid, *sorted(dict.fromkeys(disable))]
    if include_corrected:
        parts.append("corrected")
    return "-".join(parts)


def _job(name: str, base: dict[str, Any], grid: str, reference_psnr: float,
         band: tuple[float, float]) -> CellJob:
    return CellJob(kind=KIND, name=name, experiment=EXPERIMENT, base=base,
                   run_params={"ablation.grid": grid, "ablation.reference_psnr": reference_psnr,
                               "ablation.reference_band": list(band)})


def _cell(variant: Variant, seed: int, extra_tags: Mapping[str, str]) -> dict[str, Any]:
    tags = {**variant.fixset.tags(), "variant": variant.label, "disabled": variant.disabled,
            **extra_tags}
    return cell(variant.label, seed, variant.fixset.to_overrides(), tags)


def cell_records(trials: Sequence[optuna.trial.FrozenTrial]) -> list[dict[str, Any]]:
    """One record per finished cell (the first COMPLETE trial of each (label, seed): a retry or a
    duplicate adds nothing), in trial order."""
    seen: set[tuple[str, int]] = set()
    out = []
    for t in trials:
        key = cell_key(t.user_attrs)
        if t.state != TrialState.COMPLETE or key is None or key in seen:
            continue
        seen.add(key)
        c = t.user_attrs[CELL_ATTR]
        out.append({"variant": key[0], "disabled": c["tags"].get("disabled", "-"),
                    "seed": key[1], "psnr": t.values[0], "ssim": t.values[1],
                    "run_id": t.user_attrs.get(RUN_ATTR), "trial": t.number,
                    "seconds": (t.duration.total_seconds() if t.duration else float("nan"))})
    return out


def _queued_keys(engine: Engine) -> set[tuple[str, int]]:
    """Cells that are finished, running or waiting: nothing to add for them."""
    states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
    return {k for t in engine.trials(states) if (k := cell_key(t.user_attrs)) is not None}


def _enqueue(engine: Engine, cells: Sequence[tuple[Variant, int]],
             doctor_tags: Mapping[str, Mapping[str, str]]) -> int:
    present = _queued_keys(engine)
    added = 0
    for variant, seed in cells:
        if (variant.label, seed) in present:
            continue
        engine.enqueue(user_attrs={CELL_ATTR: _cell(variant, seed,
                                                    doctor_tags.get(variant.label, {}))})
        present.add((variant.label, seed))
        added += 1
    return added


def _more_seeds(table: pd.DataFrame, variants: Sequence[Variant], seeds: Seeds, first: int
                ) -> tuple[list[tuple[Variant, int]], dict[str, str]]:
    """The cells of the next adaptive round and the stop reason of every variant that is done."""
    rows = table.set_index("variant")
    reasons: dict[str, str] = {ALL_ON: "reference"}
    todo: list[tuple[Variant, int]] = []
    for v in variants:
        if v.label == ALL_ON:
            continue
        n = int(rows.loc[v.label, "n_seeds"]) if v.label in rows.index else 0
        reason = None if n == 0 else stop_reason(_psnr_comparison(rows.loc[v.label]),
                                                 seeds.resolution)
        if reason:
            reasons[v.label] = reason
        elif n >= seeds.max_seeds:
            reasons[v.label] = f"max seeds reached ({seeds.max_seeds})"
        else:
            todo.append((v, first + n))
    all_on = next(v for v in variants if v.label == ALL_ON)
    todo += [(all_on, s) for s in sorted({s for _, s in todo})]
    return todo, reasons


def _psnr_comparison(row: pd.Series) -> Paired:
    return Paired(n=int(row["n_seeds"]), mean=float(row["d_psnr"]),
                  ci_low=float(row["d_psnr_ci_low"]), ci_high=float(row["d_psnr_ci_high"]),
                  p=float(row["p_psnr"]), test="")


def _table(records: list[dict[str, Any]], band: tuple[float, float], resolution: float,
           stopped: Mapping[str, str] | None = None) -> pd.DataFrame:
    return ablation_table(records, band, ALL_ON, PRE_FIX, resolution=resolution, stopped=stopped)


def _doctor_variants(engine: Engine, variants: Sequence[Variant], base: dict[str, Any]
                     ) -> dict[str, dict[str, str]]:
    """The doctor slice of every variant, each a run of experiment ``doctor``; returns the
    summary tags of each variant's training runs."""
    tags: dict[str, dict[str, str]] = {}
    for v in variants:
        found = tracked_doctor(engine.tracker, {**v.fixset.to_overrides(), **base},
                               tags={"ablation.parent_run": engine.parent})
        tags[v.label] = summary_tags(found)
        flagged = found.report.flagged_switches()
        _log.info(f"doctor {v.label}: {len(found.report.flags)} flag(s)"
                  + (f" ({', '.join(flagged)})" if flagged else ""))
    return tags


def _adaptive_seeds(engine: Engine, variants: Sequence[Variant], seeds: Seeds, first: int,
                    band: tuple[float, float], doctor_tags: dict[str, dict[str, str]]
                    ) -> dict[str, str]:
    """Add seeds where the interval is still undecided and train them, until every variant is
    decided or stopped; returns each stopped variant's reason."""
    stopped: dict[str, str] = {}
    while engine.signum is None:
        table = _table(cell_records(engine.trials()), band, seeds.resolution)
        todo, stopped = _more_seeds(table, variants, seeds, first)
        if not todo or not _enqueue(engine, todo, doctor_tags):
            break
        _log.info(f"adaptive seeds: {len(todo)} more cell(s) for "
                  f"{', '.join(sorted({v.label for v, _ in todo} - {ALL_ON}))}")
        engine.work()
    return stopped


def run_ablation(base: dict[str, Any], variants: Sequence[Variant], name: str, storage_url: str,
                 tracking_uri: str, options: EngineOptions, seeds: Seeds = Seeds(),
                 grid: str = "leave-one-out", reference_psnr: float = REFERENCE_PSNR,
                 band: tuple[float, float] = REFERENCE_BAND, out_dir: str | Path | None = None,
                 doctor: bool = False) -> AblationResult:
    """Run (or resume) the ablation ``name``: every variant x seed a cell of the engine, trained
    by the workers of ``options`` (on this machine, or any machine that joins).

    ``doctor``: first run the doctor slice (:mod:`.doctor`) of every variant, each as a run of
    experiment ``doctor``, and tag the variant's training runs with its summary.
    """
    if band[0] > band[1]:
        raise ConfigError(f"--reference-band: low {band[0]} exceeds high {band[1]}")
    check_name(name, "--name")
    announce_known_bad(*variant_configs(variants, base, seeds.count).values())
    most_seeds = seeds.max_seeds if seeds.until_resolved else seeds.count
    check_workers(options, None if options.join else len(variants) * most_seeds, "cell(s)")
    pinned = sorted(fix_controlled_keys() & set(base))
    if pinned:
        _log.info(f"note: the run sets {', '.join(pinned)} explicitly, so those keys keep that "
                  f"value in every variant (the fixes that control them are partly neutralised)")
    first = resolve(base).training.seed
    start = time.perf_counter()
    with Engine(_job(name, base, grid, reference_psnr, band), storage_url, tracking_uri,
                options) as engine:
        before = {cell_key(t.user_attrs) for t in engine.trials((TrialState.COMPLETE,))}
        doctor_tags = (_doctor_variants(engine, variants, base) if doctor and not options.join
                       else {})
        if not options.join:
            cells = [(v, s) for v in variants for s in range(first, first + seeds.count)]
            added = _enqueue(engine, cells, doctor_tags)
            _log.info(f"ablation {name}: {len(cells)} cell(s), {len(cells) - added} already there, "
                      f"{engine.pending()} to train")
        engine.work()
        stopped = (_adaptive_seeds(engine, variants, seeds, first, band, doctor_tags)
                   if seeds.until_resolved and not options.join else {})
        if engine.signum is not None:
            # a stopped ablation may lack the cells every variant is compared with: no table yet
            _log.info(f"ablation {name} stopped: running it again resumes it and builds the table "
                      f"(`remdi-exp ablate show {name}` shows the finished cells)")
            engine.finish()  # raises Interrupted
        records = cell_records(engine.trials())
        table = _table(records, band, seeds.resolution, stopped or None)
        runs = pd.DataFrame(records)
        seconds = time.perf_counter() - start
        trained = len({(r["variant"], r["seed"]) for r in records} - before)
        _log.info(to_text(table[[c for c in SHOWN_COLUMNS if c in table.columns]]))
        _log.info(f"ablation wall time: {seconds:.0f} s ({trained} cell(s) trained now, "
                  f"{len(records)} finished in all)")
        engine.tracker.log_metrics(engine.parent, {"wall_seconds": seconds,
                                                   "cells_finished": len(records)},
                                   step=len(records))
        write_outputs(engine.tracker, engine.parent, table, runs, reference_psnr, band, out_dir)
    engine.finish()
    return AblationResult(name, engine.parent, table, runs, seconds, trained)


SHOWN_COLUMNS = ("variant", "n_seeds", "psnr_mean", "ssim_mean", "d_psnr", "d_psnr_ci_low",
                 "d_psnr_ci_high", "p_psnr_holm", "verdict", "stop_reason")


def show_ablation(name: str, storage_url: str, band: tuple[float, float] = REFERENCE_BAND,
                  resolution: float = RESOLUTION) -> tuple[pd.DataFrame, dict[str, int]]:
    """The current table of a running or finished ablation, and its cells by state."""
    study = load_existing(name, storage_url, kind=KIND)
    trials = study.get_trials(deepcopy=False)
    counts = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    records = cell_records(trials)
    if not records:
        return pd.DataFrame(), counts
    return _table(records, band, resolution), counts


def write_outputs(tracker: Tracker, parent: str, table: pd.DataFrame, runs: pd.DataFrame,
                  reference_psnr: float, band: tuple[float, float],
                  out_dir: str | Path | None) -> None:
    """The table (CSV, Markdown, MLflow table), the cells, the forest plot on the parent run;
    the Markdown table is the parent run's description (its Overview page)."""
    chart = ablation_chart(table, band, reference_psnr)
    markdown = ablation_markdown(table)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out_dir) if out_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        files = {"ablation.csv": lambda p: table.to_csv(p, index=False),
                 "ablation.md": lambda p: p.write_text(markdown, encoding="utf-8"),
                 "ablation_runs.csv": lambda p: runs.to_csv(p, index=False),
                 "ablation.png": lambda p: chart.savefig(p, dpi=110, bbox_inches="tight")}
        for file, write in files.items():
            write(folder / file)
            tracker.log_file(parent, folder / file, "ablation")
    tracker.log_table(parent, table, "ablation/ablation_table.json")
    tracker.set_tags(parent, {"mlflow.note.content": markdown})
