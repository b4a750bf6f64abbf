"""Two or more configurations trained on the same seeds and compared with paired statistics:
``remdi-exp versus quick@corrected recipe --seeds 3``.

A contender is a preset name (or a TOML path), optionally with ``@PROFILE`` to set
``fixes.profile``. The first contender is the baseline; the others are its differences from it,
so each cell's config is exactly its contender's. Paired by seed, two configs share the data
split and order; to be a comparison at all they must also validate on the same images, so
configs whose validation data differ (``data.*``, ``synthetic.*``, the validation crop size or
batch cap) are refused with the keys that differ. The job (kind ``versus``, MLflow experiment
``versus``) resumes like an ablation: running it again trains only the missing cells.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from remdinet.config import ConfigError
from remdinet.resolve import resolve

from .contest import Entry, run_contest
from .engine import CellJob, EngineOptions
from .names import check_name
from .presets import run_overrides

KIND = "versus"
EXPERIMENT = "versus"
# what the validation images depend on; the training-only data options may differ
_TRAINING_ONLY = {"data.augment", "data.cache_decoded", "data.skip_bad"}
_VALIDATION_KEYS = ("training.image_size", "training.max_val_batches")


@dataclass(frozen=True)
class Contender:
    label: str
    overrides: dict[str, Any]


@dataclass
class VersusOutcome:
    name: str
    parent_run_id: str
    table: pd.DataFrame
    seconds: float


def parse_contender(text: str, set_items: Iterable[str] = (), data: str | Path | None = None,
                    device: str | None = None) -> Contender:
    """``PRESET`` or ``PRESET@PROFILE``; ``--set``/``--data``/``--device`` apply to every
    contender."""
    preset, _, profile = text.partition("@")
    if not preset:
        raise ConfigError(f"contender {text!r}: give a preset name or TOML path before '@'")
    sets = list(set_items) + ([f"fixes.profile={profile}"] if profile else [])
    return Contender(text, run_overrides(preset, None, sets, data, device))


def validation_view(flat: dict[str, Any]) -> dict[str, Any]:
    """The overrides that decide which validation images a run scores on."""
    return {k: v for k, v in flat.items()
            if (k.startswith(("data.", "synthetic.")) and k not in _TRAINING_ONLY)
            or k in _VALIDATION_KEYS}


def default_name(contenders: Sequence[Contender]) -> str:
    return "-vs-".join(Path(c.label.partition("@")[0]).stem
                       + (f"+{c.label.partition('@')[2]}" if "@" in c.label else "")
                       for c in contenders)


def run_versus(contenders: Sequence[Contender], seeds: int, storage_url: str, tracking_uri: str,
               options: EngineOptions, name: str | None = None) -> VersusOutcome:
    """Train every contender on ``seeds`` seeds (the baseline's ``training.seed``, +1, ...) and
    compare each with the first, paired by seed."""
    if len(contenders) < 2:
        raise ConfigError("versus needs a baseline and at least one candidate")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    labels = [c.label for c in contenders]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"versus: a contender is given twice ({', '.join(labels)})")
    name = check_name(name or default_name(contenders), "--name")
    base = contenders[0]
    base_flat = resolve(base.overrides).to_flat()
    base_view = validation_view(base_flat)
    entries = [Entry(base.label, {})]
    for c in contenders[1:]:
        flat = resolve(c.overrides).to_flat()
        differ = sorted(k for k, v in validation_view(flat).items() if base_view.get(k) != v)
        if differ:
            raise ConfigError(f"versus: {c.label!r} validates on other data than {base.label!r} "
                              f"(they differ in {', '.join(differ)}); a paired comparison needs "
                              f"the same validation images")
        entries.append(Entry(c.label, {k: v for k, v in flat.items() if base_flat[k] != v}))
    first = base_flat["training.seed"]
    job = CellJob(kind=KIND, name=name, experiment=EXPERIMENT, base=base.overrides,
                  run_params={"versus.contenders": ", ".join(labels)}, trial_folder=KIND)
    start = time.perf_counter()
    table, parent = run_contest(job, entries, list(range(first, first + seeds)), storage_url,
                                tracking_uri, options, KIND)
    return VersusOutcome(name, parent, table, time.perf_counter() - start)
