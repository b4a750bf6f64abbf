"""Fix ablations: train variants (fix sets) x seeds as MLflow child runs of one parent run, then
the table and chart of :mod:`.report`.

A variant is a :class:`remdinet.fixes.FixSet` with its label. Its config is
``resolve(fix-set overrides + the run's explicit overrides)``, so the pre-fix value of a setting a
switched-off fix changed applies unless the user set that key explicitly (remdinet.config.resolve).
The all-fixes-on and all-fixes-off (pre-fix) variants always run: the deltas are taken against them.
"""
from __future__ import annotations

import itertools
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from remdinet.config import Config, ConfigError, resolve
from remdinet.fixes import FIXES, FixSet, expand

from .doctor import summary_tags, tracked_doctor
from .report import ablation_chart, ablation_table, to_markdown, to_text
from .runs import tracked_run
from .tracking import Tracker

GRIDS = ("leave-one-out", "full", "none")
EXPERIMENT = "ablations"
ALL_ON = FixSet.all_on().label()
PRE_FIX = FixSet.all_off().label()
REFERENCE_PSNR = 18.5
REFERENCE_BAND = (18.0, 19.0)


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
    parent_run_id: str
    table: pd.DataFrame
    runs: pd.DataFrame
    seconds: float


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


def run_ablation(tracker: Tracker, base: dict[str, Any], variants: Sequence[Variant],
                 seeds: int = 1, reference_psnr: float = REFERENCE_PSNR,
                 band: tuple[float, float] = REFERENCE_BAND, grid: str = "leave-one-out",
                 out_dir: str | Path | None = None, quiet: bool = False,
                 log: Callable[[str], None] = print, doctor: bool = False) -> AblationResult:
    """Train every variant x seed under one parent run of experiment ``ablations``.

    ``doctor``: first run the doctor slice (:mod:`.doctor`) of every variant, each as a run of
    experiment ``doctor``, and tag the variant's training runs with its summary.
    """
    if band[0] > band[1]:
        raise ConfigError(f"--reference-band: low {band[0]} exceeds high {band[1]}")
    configs = variant_configs(variants, base, seeds)
    pinned = sorted(fix_controlled_keys() & set(base))
    if pinned:
        log(f"note: the run sets {', '.join(pinned)} explicitly, so those keys keep that value in "
            f"every variant (the fixes that control them are partly neutralised)")
    seed_list = sorted({seed for _, seed in configs})
    start = time.perf_counter()
    exp_id = tracker.experiment_id(EXPERIMENT)
    parent_tags = {"kind": "ablation", "grid": grid, "variants": len(variants),
                   "seeds": ",".join(map(str, seed_list))}
    name = f"ablation {grid}: {len(variants)} variants x {len(seed_list)} seed(s)"
    records: list[dict[str, Any]] = []
    with tracker.active_run(exp_id, name, parent_tags) as parent:
        tracker.log_params(parent, {**base,
                                    "ablation.variants": " | ".join(v.label for v in variants),
                                    "ablation.seeds": seed_list, "ablation.grid": grid,
                                    "ablation.reference_psnr": reference_psnr,
                                    "ablation.reference_band": list(band)})
        doctor_tags: dict[str, dict[str, str]] = {}
        if doctor:
            for v in variants:
                found = tracked_doctor(tracker, {**v.fixset.to_overrides(), **base},
                                       tags={"ablation.parent_run": parent})
                doctor_tags[v.label] = summary_tags(found)
                flagged = found.report.flagged_switches()
                log(f"doctor {v.label}: {len(found.report.flags)} flag(s)"
                    + (f" ({', '.join(flagged)})" if flagged else ""))
        total = len(configs)
        for i, ((label, seed), cfg) in enumerate(configs.items(), 1):
            variant = next(v for v in variants if v.label == label)
            tags = {**variant.fixset.tags(), "variant": label, "seed": seed,
                    "disabled": variant.disabled, **doctor_tags.get(label, {})}
            outcome = tracked_run(tracker, exp_id, cfg, f"{label} / seed {seed}", tags,
                                  parent_run_id=parent,
                                  run_dir_root=Path(cfg.training.output_dir) / EXPERIMENT / parent,
                                  quiet=quiet)
            records.append({"variant": label, "disabled": variant.disabled, "seed": seed,
                            "psnr": outcome.final["final_psnr"],
                            "ssim": outcome.final["final_ssim"],
                            "run_id": outcome.run_id, "seconds": outcome.seconds})
            log(f"[{i}/{total}] {label} (seed {seed}): PSNR {outcome.final['final_psnr']:.3f} dB, "
                f"SSIM {outcome.final['final_ssim']:.4f}, {outcome.seconds:.0f} s")
        table = ablation_table(records, band, ALL_ON, PRE_FIX)
        runs = pd.DataFrame(records)
        seconds = time.perf_counter() - start
        log(to_text(table))
        log(f"ablation wall time: {seconds:.0f} s ({total} runs)")
        tracker.log_metrics(parent, {"wall_seconds": seconds})
        _write_outputs(tracker, parent, table, runs, reference_psnr, band, out_dir)
    return AblationResult(parent, table, runs, seconds)


def _write_outputs(tracker: Tracker, parent: str, table: pd.DataFrame, runs: pd.DataFrame,
                   reference_psnr: float, band: tuple[float, float],
                   out_dir: str | Path | None) -> None:
    chart = ablation_chart(table, band, reference_psnr)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out_dir) if out_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        files = {"ablation.csv": lambda p: table.to_csv(p, index=False),
                 "ablation.md": lambda p: p.write_text(to_markdown(table), encoding="utf-8"),
                 "ablation_runs.csv": lambda p: runs.to_csv(p, index=False),
                 "ablation.png": lambda p: chart.savefig(p, dpi=110, bbox_inches="tight")}
        for name, write in files.items():
            write(folder / name)
            tracker.log_file(parent, folder / name, "ablation")
