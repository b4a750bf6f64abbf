"""Tables and figures of the experiment layer: the ablation table and chart, sample-output grids,
run tables for ``compare`` and a small Markdown writer (pandas' ``to_markdown`` needs ``tabulate``).

Figures are built on :class:`matplotlib.figure.Figure` directly, not pyplot, so no global backend
or figure registry is involved and worker threads can draw at the same time.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from rich.markup import escape
from rich.table import Table

from remdinet.errors import ConfigError, did_you_mean
from remdinet.train import metric_names

from .stats import Paired, holm, paired, verdict

ABLATION_COLUMNS = (
    "variant", "disabled", "n_seeds", "seeds", "psnr_mean", "psnr_std", "ssim_mean", "ssim_std",
    "d_psnr", "d_psnr_ci_low", "d_psnr_ci_high", "p_psnr", "p_psnr_holm",
    "d_ssim", "d_ssim_ci_low", "d_ssim_ci_high", "p_ssim", "p_ssim_holm", "verdict",
    "ssim_verdict", "d_psnr_vs_pre_fix", "d_psnr_vs_pre_fix_ci_low", "d_psnr_vs_pre_fix_ci_high",
    "p_psnr_vs_pre_fix_holm", "band_position", "stop_reason")
ABLATION_SUMMARY_COLUMNS = ("variant", "n_seeds", "psnr_mean", "ssim_mean", "d_psnr",
                            "d_psnr_ci_low", "d_psnr_ci_high", "p_psnr_holm", "verdict",
                            "band_position")
REFERENCE = "reference"


def band_position(value: float, band: tuple[float, float]) -> str:
    if math.isnan(value):
        return "undefined"
    lo, hi = band
    return "below" if value < lo else "above" if value > hi else "inside"


def _comparisons(by_seed: dict[str, dict[int, float]], order: list[str], reference: str
                 ) -> dict[str, tuple[Paired, float]]:
    """Each variant against ``reference`` (paired by seed), with Holm across the family."""
    if reference not in by_seed:
        return {v: (paired({}, {}), math.nan) for v in order}
    others = [v for v in order if v != reference]
    cmps = {v: paired(by_seed[v], by_seed[reference]) for v in others}
    adjusted = dict(zip(others, holm([cmps[v].p for v in others])))
    return {v: (cmps[v], adjusted[v]) for v in others}


def ablation_table(records: Iterable[Mapping[str, Any]], band: tuple[float, float],
                   all_on: str, pre_fix: str, resolution: float = 0.1,
                   ssim_resolution: float = 0.002,
                   stopped: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per variant (``all_on`` first, ``pre_fix`` second, then first-seen order) from
    per-run records carrying ``variant``, ``disabled`` (text), ``seed``, ``psnr`` and ``ssim``.

    ``d_*``: the variant minus ``all_on``, paired by seed (:func:`.stats.paired`), with its 95 %
    interval, raw and Holm-adjusted p (Holm over the variants of the table) and a verdict;
    ``*_vs_pre_fix``: the same against ``pre_fix`` (NaN when the table has none). Std is the
    sample std over seeds (NaN for one seed). ``stopped``: why each variant has the seeds it has.
    """
    runs = pd.DataFrame(list(records))
    if runs.empty or all_on not in set(runs["variant"]):
        raise ValueError(f"ablation table: baseline variant {all_on!r} has no runs")
    dup = runs[runs.duplicated(["variant", "seed"], keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        raise ValueError(f"ablation table: variant {first['variant']!r} has several runs of seed "
                         f"{first['seed']}")
    seen = list(dict.fromkeys(runs["variant"]))
    order = [v for v in (all_on, pre_fix) if v in seen] + [v for v in seen
                                                           if v not in (all_on, pre_fix)]
    groups = {v: runs[runs["variant"] == v] for v in order}
    psnr = {v: dict(zip(g["seed"], g["psnr"])) for v, g in groups.items()}
    ssim = {v: dict(zip(g["seed"], g["ssim"])) for v, g in groups.items()}
    vs_on_psnr = _comparisons(psnr, order, all_on)
    vs_on_ssim = _comparisons(ssim, order, all_on)
    vs_pre = _comparisons(psnr, order, pre_fix)
    rows = []
    for v in order:
        g = groups[v]
        row: dict[str, Any] = {
            "variant": v, "disabled": g["disabled"].iloc[0], "n_seeds": len(g),
            "seeds": ",".join(str(int(s)) for s in sorted(g["seed"])),
            "psnr_mean": g["psnr"].mean(), "psnr_std": g["psnr"].std(ddof=1),
            "ssim_mean": g["ssim"].mean(), "ssim_std": g["ssim"].std(ddof=1)}
        for metric, cmps, res, unit in (("psnr", vs_on_psnr, resolution, "dB"),
                                        ("ssim", vs_on_ssim, ssim_resolution, "")):
            cmp, adj = cmps.get(v, (Paired(len(g), 0.0, math.nan, math.nan, math.nan, "none"),
                                    math.nan))
            row.update({f"d_{metric}": cmp.mean, f"d_{metric}_ci_low": cmp.ci_low,
                        f"d_{metric}_ci_high": cmp.ci_high, f"p_{metric}": cmp.p,
                        f"p_{metric}_holm": adj})
            name = "verdict" if metric == "psnr" else "ssim_verdict"
            row[name] = REFERENCE if v == all_on else verdict(cmp, adj, res, unit)
        cmp, adj = vs_pre.get(v, (Paired(len(g), 0.0 if v == pre_fix else math.nan, math.nan,
                                         math.nan, math.nan, "none"), math.nan))
        row.update({"d_psnr_vs_pre_fix": cmp.mean, "d_psnr_vs_pre_fix_ci_low": cmp.ci_low,
                    "d_psnr_vs_pre_fix_ci_high": cmp.ci_high, "p_psnr_vs_pre_fix_holm": adj,
                    "band_position": band_position(row["psnr_mean"], band),
                    "stop_reason": (stopped or {}).get(v, "")})
        rows.append(row)
    return pd.DataFrame(rows, columns=list(ABLATION_COLUMNS))


def ablation_markdown(table: pd.DataFrame) -> str:
    """The summary columns as Markdown, under a line saying what the numbers are."""
    head = ("Δ = variant − all-on, paired by seed; 95 % Student-t interval; p Holm-corrected "
            "across the variants (paired t below 6 seeds, Wilcoxon signed-rank from 6).\n\n")
    return head + to_markdown(table[[c for c in ABLATION_SUMMARY_COLUMNS if c in table.columns]])


def _text(value: Any, floatfmt: str) -> str:
    if isinstance(value, (float, np.floating)):
        return "–" if math.isnan(value) else format(float(value), floatfmt)
    return str(value)


def _cell(value: Any, floatfmt: str) -> str:
    return _text(value, floatfmt).replace("|", "\\|")


def to_markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """GitHub-flavoured Markdown table; numbers right-aligned, floats with ``floatfmt``."""
    headers = [str(c) for c in df.columns]
    rows = [[_cell(v, floatfmt) for v in row] for row in df.itertuples(index=False)]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if num else c.ljust(w)
                                 for c, w, num in zip(cells, widths, numeric)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2))
                          for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line(headers), rule] + [line(r) for r in rows]) + "\n"


def to_text(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    return df.to_string(index=False, na_rep="–",
                        float_format=lambda v: "–" if math.isnan(v) else format(v, floatfmt))


def ablation_chart(table: pd.DataFrame, band: tuple[float, float], reference_psnr: float,
                   title: str = "Ablation: paired ΔPSNR vs all-on, and PSNR per variant"
                   ) -> Figure:
    """Left: a forest plot of ΔPSNR per variant (vs all-on, paired by seed) with its 95 %
    interval and verdict, a zero line. Right: mean PSNR per variant (± std where there are two
    seeds or more), the reference band shaded, the reference line."""
    rows = table.iloc[1:] if len(table) > 1 else table
    n = len(rows)
    fig = Figure(figsize=(13.0, 0.55 * max(n, len(table)) + 2.2))
    forest, absolute = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1.0]})
    y = np.arange(n)[::-1]
    means = rows["d_psnr"].to_numpy(dtype=float)
    lo = rows["d_psnr_ci_low"].to_numpy(dtype=float)
    hi = rows["d_psnr_ci_high"].to_numpy(dtype=float)
    has = np.isfinite(lo) & np.isfinite(hi)
    forest.errorbar(means[has], y[has], xerr=[means[has] - lo[has], hi[has] - means[has]],
                    fmt="o", color="#4c72b0", capsize=4, zorder=3)
    forest.plot(means[~has], y[~has], "o", color="#8c8c8c", zorder=3)
    forest.axvline(0.0, color="#c44e52", linestyle="--", zorder=2)
    for yi, m, h, text in zip(y, means, np.where(has, hi, means), rows["verdict"]):
        if np.isfinite(m):
            forest.annotate(str(text), (h, yi), xytext=(6, 0), textcoords="offset points",
                            va="center", fontsize=7)
    forest.set_yticks(y)
    forest.set_yticklabels(rows["variant"])
    forest.set_xlabel("ΔPSNR vs all-on (dB), 95 % interval")
    forest.set_title(title, fontsize=10, loc="left")
    forest.grid(axis="x", alpha=0.3, zorder=0)
    finite = np.concatenate([means[np.isfinite(means)], lo[has], hi[has], [0.0]])
    span = max(float(finite.max() - finite.min()), 0.5)
    forest.set_xlim(finite.min() - 0.1 * span, finite.max() + 0.6 * span)

    ya = np.arange(len(table))[::-1]
    psnr = table["psnr_mean"].to_numpy(dtype=float)
    std = table["psnr_std"].to_numpy(dtype=float)
    absolute.barh(ya, psnr, xerr=np.where(np.isfinite(std), std, 0.0), capsize=3,
                  color="#4c72b0", zorder=3)
    absolute.axvspan(band[0], band[1], color="#dd8452", alpha=0.25, zorder=1,
                     label=f"pre-fix band {band[0]:g}-{band[1]:g} dB")
    absolute.axvline(reference_psnr, color="#c44e52", linestyle="--", zorder=4,
                     label=f"reference {reference_psnr:g} dB")
    absolute.set_yticks(ya)
    absolute.set_yticklabels(table["variant"])
    absolute.set_xlabel("PSNR (dB), mean over seeds")
    absolute.grid(axis="x", alpha=0.3, zorder=0)
    absolute.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return fig


def _to_image(t: Any) -> np.ndarray:
    """3xHxW tensor/array in [0, 1] -> HxWx3 numpy clipped to [0, 1]."""
    arr = t.detach().cpu().float().numpy() if hasattr(t, "detach") else np.asarray(t, dtype=float)
    return np.clip(np.transpose(arr, (1, 2, 0)), 0.0, 1.0)


def sample_grid(rows: Sequence[tuple[str, Any, Any, Any | None]]) -> Figure:
    """Grid with one row per image: input | output | target (blank when unpaired).

    ``rows`` are ``(name, input01, output01, target01_or_None)`` with 3xHxW images in [0, 1].
    """
    if not rows:
        raise ValueError("sample_grid: no images")
    fig = Figure(figsize=(7.5, 2.6 * len(rows)))
    for r, (name, inp, out, tgt) in enumerate(rows):
        for c, (title, img) in enumerate((("input", inp), ("output", out), ("target", tgt))):
            ax = fig.add_subplot(len(rows), 3, 3 * r + c + 1)
            ax.axis("off")
            if img is not None:
                ax.imshow(_to_image(img))
            ax.set_title(f"{name}: {title}" if c == 0 else title, fontsize=8)
    fig.tight_layout()
    return fig


def runs_frame(runs: Iterable[Any], include_params: bool = True) -> pd.DataFrame:
    """MLflow runs -> one row each: id, name, status, start, then tags.*, params.*, metrics.*."""
    rows = []
    for run in runs:
        row: dict[str, Any] = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            "start_time": pd.to_datetime(run.info.start_time, unit="ms"),
        }
        row.update({f"tags.{k}": v for k, v in sorted(run.data.tags.items())
                    if not k.startswith("mlflow.") or k == "mlflow.parentRunId"})
        if include_params:
            row.update({f"params.{k}": v for k, v in sorted(run.data.params.items())})
        row.update({f"metrics.{k}": v for k, v in sorted(run.data.metrics.items())})
        rows.append(row)
    return pd.DataFrame(rows)


# the run-level results a train run logs at its end (runs.py), then the last validation's
COMPARE_METRICS = tuple(f"metrics.{m}" for m in (
    "final_psnr", "final_ssim", "best_val_psnr", "best_val_ssim", metric_names.VAL_PSNR,
    metric_names.VAL_SSIM, "epochs_run"))


def compare_columns(table: pd.DataFrame) -> list[str]:
    """The default columns of ``compare``: run name and status, the params whose value differs
    between the runs (what a study searched, what an ablation switched), the run-level metrics
    present, and the run id last (what ``train --resume`` takes)."""
    differing = [c for c in table.columns
                 if c.startswith("params.") and table[c].nunique(dropna=True) > 1]
    return [c for c in ("run_name", "status", *differing, *COMPARE_METRICS, "run_id")
            if c in table.columns]


def _known(table: pd.DataFrame, name: str, option: str) -> str:
    if name not in table.columns:
        raise ConfigError(f"{option}: unknown column {name!r}"
                          f"{did_you_mean(name, map(str, table.columns))}")
    return name


def _sort_key(values: pd.Series) -> pd.Series:
    # MLflow stores params as text: "0.25" < "0.1" as text, so numbers sort as numbers
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers if numbers.notna().sum() == values.notna().sum() else values


def compare_view(table: pd.DataFrame, columns: str | None = None, sort: str | None = None
                 ) -> tuple[pd.DataFrame, list[str]]:
    """``table`` (of :func:`runs_frame`) sorted by ``sort`` (a column name, ascending; ``-NAME``
    descending; missing values last, ties in MLflow's order) and the columns to show: the
    comma-separated exact names of ``columns`` in that order, else :func:`compare_columns`. An
    unknown name is a :class:`ConfigError` naming the closest column. No runs: nothing to check."""
    if table.empty:
        return table, list(table.columns)
    if sort:
        name = _known(table, sort.removeprefix("-"), "--sort")
        table = table.sort_values(name, ascending=not sort.startswith("-"), kind="stable",
                                  na_position="last", key=_sort_key, ignore_index=True)
    names = [n.strip() for n in (columns or "").split(",") if n.strip()]
    shown = [_known(table, n, "--columns") for n in names] or compare_columns(table)
    return table, shown


def rich_table(df: pd.DataFrame, floatfmt: str = ".4f") -> Table:
    """``df`` as a terminal table: numbers right-aligned, floats with ``floatfmt``, long cells
    folded rather than cut."""
    out = Table(header_style="bold", show_edge=False)
    for column in df.columns:
        out.add_column(escape(str(column)), overflow="fold",
                       justify="right" if pd.api.types.is_numeric_dtype(df[column]) else "left")
    for row in df.itertuples(index=False):
        out.add_row(*(escape(_text(v, floatfmt)) for v in row))
    return out
