"""Paired statistics of runs that differ in one thing and share seeds.

The same seed gives the same initialisation and data order, so two variants trained on seed s
form a pair, and their difference cancels what the seed alone does. Over n seeds: the mean
difference, its Student-t confidence interval, and a two-sided paired test (paired t below
:data:`WILCOXON_FROM` seeds; Wilcoxon signed-rank from there on, which needs no normality but
cannot reach p < 0.05 with fewer than 6 pairs). Holm's step-down correction controls the
family-wise error over the variants of one table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05
WILCOXON_FROM = 6
ONE_SEED = "1 seed: no interval"


@dataclass(frozen=True)
class Paired:
    n: int
    mean: float
    ci_low: float
    ci_high: float
    p: float
    test: str

    @property
    def width(self) -> float:
        return self.ci_high - self.ci_low


def paired(values: Mapping[int, float], reference: Mapping[int, float], level: float = 0.95
           ) -> Paired:
    """``values - reference`` over the seeds both have."""
    seeds = sorted(set(values) & set(reference))
    diffs = np.array([values[s] - reference[s] for s in seeds], dtype=float)
    n = len(diffs)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan, "none")
    mean = float(diffs.mean())
    if n < 2:
        return Paired(1, mean, math.nan, math.nan, math.nan, "none")
    sd = float(diffs.std(ddof=1))
    if sd == 0.0:
        # every seed moved by exactly the same amount (deterministic training makes this real):
        # the interval is that point, and a constant non-zero shift is as certain as it gets
        return Paired(n, mean, mean, mean, 1.0 if mean == 0.0 else 0.0,
                      "paired t" if n < WILCOXON_FROM else "wilcoxon")
    half = float(stats.t.ppf((1.0 + level) / 2.0, n - 1)) * sd / math.sqrt(n)
    if n < WILCOXON_FROM:
        p, test = float(stats.ttest_1samp(diffs, 0.0).pvalue), "paired t"
    else:
        # "zsplit" keeps zero differences in the ranking (half to each side) instead of dropping
        # them, so a few exact ties do not shrink n or make the statistic undefined
        p, test = float(stats.wilcoxon(diffs, zero_method="zsplit").pvalue), "wilcoxon"
    return Paired(n, mean, mean - half, mean + half, p, test)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values; NaN entries stay NaN and are not counted."""
    index = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    order = sorted(index, key=lambda i: p_values[i])
    m = len(order)
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


def _decimals(resolution: float) -> int:
    text = f"{resolution:g}"
    return max(2, len(text.split(".")[1]) if "." in text else 0)


def verdict(cmp: Paired, p_adjusted: float, resolution: float, unit: str = "dB",
            alpha: float = ALPHA) -> str:
    """``helps`` / ``hurts`` (Holm-adjusted p below ``alpha``), ``no effect detected`` (the
    whole interval within ±resolution), else ``inconclusive``; one seed has no interval."""
    if cmp.n < 2:
        return ONE_SEED
    if p_adjusted < alpha and cmp.mean != 0.0:
        return "helps" if cmp.mean > 0 else "hurts"
    suffix = f" {unit}" if unit else ""
    if -resolution < cmp.ci_low and cmp.ci_high < resolution:
        return f"no effect detected (|Δ| < {resolution:g}{suffix})"
    d = _decimals(resolution)
    return (f"inconclusive at {cmp.n} seeds (95 % CI {cmp.ci_low:+.{d}f} to "
            f"{cmp.ci_high:+.{d}f}{suffix})")


def stop_reason(cmp: Paired, resolution: float) -> str | None:
    """Why a variant needs no more seeds, or None while it does (adaptive seeds)."""
    if cmp.n < 2:
        return None
    if cmp.ci_low > 0 or cmp.ci_high < 0:
        return "interval excludes 0"
    if cmp.width <= resolution:
        return f"interval narrower than {resolution:g}"
    return None
