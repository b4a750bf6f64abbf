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

ABLATION_COLUMNS = ("variant", "disabled", "n_seeds", "psnr_mean", "psnr_std", "ssim_mean",
                    "ssim_std", "delta_psnr_vs_all_on", "delta_psnr_vs_pre_fix", "band_position")


def band_position(value: float, band: tuple[float, float]) -> str:
    if math.isnan(value):
        return "undefined"
    lo, hi = band
    return "below" if value < lo else "above" if value > hi else "inside"


def ablation_table(records: Iterable[Mapping[str, Any]], band: tuple[float, float],
                   all_on: str, pre_fix: str) -> pd.DataFrame:
    """One row per variant (in first-seen order) from per-run records.

    ``records`` carry ``variant``, ``disabled`` (text), ``seed``, ``psnr`` and ``ssim``; ``all_on``
    and ``pre_fix`` name the variants the deltas are taken against. Std is the sample std over
    seeds (undefined, NaN, for a single seed).
    """
    runs = pd.DataFrame(list(records))
    for label in (all_on, pre_fix):
        if label not in set(runs["variant"]):
            raise ValueError(f"ablation table: baseline variant {label!r} has no runs")
    order = list(dict.fromkeys(runs["variant"]))
    grouped = runs.groupby("variant", sort=False)
    table = pd.DataFrame({
        "variant": order,
        "disabled": [grouped.get_group(v)["disabled"].iloc[0] for v in order],
        "n_seeds": [len(grouped.get_group(v)) for v in order],
        "psnr_mean": [grouped.get_group(v)["psnr"].mean() for v in order],
        "psnr_std": [grouped.get_group(v)["psnr"].std(ddof=1) for v in order],
        "ssim_mean": [grouped.get_group(v)["ssim"].mean() for v in order],
        "ssim_std": [grouped.get_group(v)["ssim"].std(ddof=1) for v in order],
    })
    by_variant = table.set_index("variant")["psnr_mean"]
    table["delta_psnr_vs_all_on"] = table["psnr_mean"] - by_variant[all_on]
    table["delta_psnr_vs_pre_fix"] = table["psnr_mean"] - by_variant[pre_fix]
    table["band_position"] = [band_position(v, band) for v in table["psnr_mean"]]
    return table[list(ABLATION_COLUMNS)]


def _cell(value: Any, floatfmt: str) -> str:
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else format(float(value), floatfmt)
    return str(value).replace("|", "\\|")


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
    return df.to_string(index=False, float_format=lambda v: format(v, floatfmt))


def ablation_chart(table: pd.DataFrame, band: tuple[float, float], reference_psnr: float,
                   title: str = "Ablation: validation PSNR per variant") -> Figure:
    """Bars of mean PSNR with std error bars, the reference band shaded, the reference line."""
    n = len(table)
    fig = Figure(figsize=(max(6.0, 1.1 * n + 2.0), 4.8))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(n)
    means = table["psnr_mean"].to_numpy(dtype=float)
    # a single seed has no std (NaN): matplotlib draws no error bar for it
    yerr = table["psnr_std"].to_numpy(dtype=float)
    ax.bar(x, means, yerr=yerr, capsize=4, color="#4c72b0", zorder=3)
    ax.axhspan(band[0], band[1], color="#dd8452", alpha=0.25, zorder=1,
               label=f"reference band {band[0]:g}-{band[1]:g} dB")
    ax.axhline(reference_psnr, color="#c44e52", linestyle="--", zorder=4,
               label=f"reference {reference_psnr:g} dB")
    ax.set_xticks(x)
    ax.set_xticklabels(table["variant"], rotation=30, ha="right")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3, zorder=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    lower = means - np.nan_to_num(yerr)
    bottom = np.concatenate([lower[np.isfinite(lower)], [band[0], reference_psnr]]).min()
    ax.set_ylim(max(0.0, bottom - 2.0), None)
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
