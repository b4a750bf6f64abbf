"""Ablation table, Markdown writer, charts and run tables."""
from __future__ import annotations

import io
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console

from remdinet.config import ConfigError
from remdinet.exp.report import (ABLATION_COLUMNS, ablation_chart, ablation_markdown,
                                 ablation_table, band_position, compare_columns, compare_view,
                                 rich_table, runs_frame, sample_grid, to_markdown)
from remdinet.exp.stats import ONE_SEED, holm

RECORDS = [
    {"variant": "all-on", "disabled": "-", "seed": 1, "psnr": 20.0, "ssim": 0.80},
    {"variant": "all-on", "disabled": "-", "seed": 2, "psnr": 22.0, "ssim": 0.84},
    {"variant": "pre", "disabled": "all", "seed": 1, "psnr": 18.0, "ssim": 0.70},
    {"variant": "pre", "disabled": "all", "seed": 2, "psnr": 18.4, "ssim": 0.72},
    {"variant": "-x", "disabled": "x", "seed": 1, "psnr": 17.0, "ssim": 0.60},
    {"variant": "-x", "disabled": "x", "seed": 2, "psnr": 17.5, "ssim": 0.62},
]


def test_ablation_table_aggregates_seeds_and_takes_deltas_against_both_baselines():
    table = ablation_table(RECORDS, (18.0, 19.0), all_on="all-on", pre_fix="pre")
    assert tuple(table.columns) == ABLATION_COLUMNS
    assert list(table["variant"]) == ["all-on", "pre", "-x"]
    row = table.set_index("variant").loc["all-on"]
    assert row["n_seeds"] == 2
    assert row["psnr_mean"] == pytest.approx(21.0)
    assert row["psnr_std"] == pytest.approx(np.std([20.0, 22.0], ddof=1))
    assert row["ssim_mean"] == pytest.approx(0.82)
    assert row["d_psnr"] == pytest.approx(0.0)
    assert row["verdict"] == "reference"
    assert row["d_psnr_vs_pre_fix"] == pytest.approx(21.0 - 18.2)
    x = table.set_index("variant").loc["-x"]
    assert x["d_psnr"] == pytest.approx(-3.75)  # seed 1: -3.0, seed 2: -4.5
    assert x["seeds"] == "1,2"
    assert list(table["band_position"]) == ["above", "inside", "below"]


def test_holm_is_applied_across_the_variants_of_the_table():
    table = ablation_table(RECORDS, (18.0, 19.0), all_on="all-on", pre_fix="pre").iloc[1:]
    assert list(table["p_psnr_holm"]) == pytest.approx(holm(list(table["p_psnr"])))


def test_one_seed_gives_a_plain_verdict_and_no_nan_in_the_markdown():
    table = ablation_table([r for r in RECORDS if r["seed"] == 1], (18, 19), "all-on", "pre")
    assert list(table["verdict"]) == ["reference", ONE_SEED, ONE_SEED]
    assert "nan" not in ablation_markdown(table).lower()


def test_a_duplicated_cell_is_an_error_naming_it():
    with pytest.raises(ValueError, match="'-x' has several runs of seed 2"):
        ablation_table(RECORDS + [RECORDS[-1]], (18, 19), "all-on", "pre")


def test_single_seed_std_is_undefined():
    table = ablation_table([r for r in RECORDS if r["seed"] == 1], (18, 19), "all-on", "pre")
    assert table["psnr_std"].isna().all()


def test_missing_all_on_is_an_error_and_a_missing_pre_fix_leaves_its_columns_empty():
    with pytest.raises(ValueError, match="baseline variant 'all-on'"):
        ablation_table([r for r in RECORDS if r["variant"] != "all-on"], (18, 19), "all-on", "pre")
    table = ablation_table([r for r in RECORDS if r["variant"] != "pre"], (18, 19), "all-on", "pre")
    assert table["d_psnr_vs_pre_fix"].isna().all()


def test_band_position_edges_are_inside_and_nan_is_undefined():
    assert band_position(18.0, (18.0, 19.0)) == "inside"
    assert band_position(19.0, (18.0, 19.0)) == "inside"
    assert band_position(math.nan, (18.0, 19.0)) == "undefined"


def test_markdown_table_has_header_rule_and_right_aligned_numbers():
    df = pd.DataFrame({"variant": ["a|b", "c"], "psnr": [1.23456, float("nan")]})
    lines = to_markdown(df, ".2f").splitlines()
    assert lines[0].split("|")[1].strip() == "variant"
    assert lines[1].endswith(":|")  # numeric column right-aligned
    assert "a\\|b" in lines[2] and "1.23" in lines[2]
    assert "–" in lines[3]
    assert len({len(line) for line in lines}) == 1


@pytest.mark.parametrize("seeds", [(1,), (1, 2)])
def test_ablation_chart_is_a_forest_plot_beside_absolute_psnr_with_the_band(seeds):
    table = ablation_table([r for r in RECORDS if r["seed"] in seeds], (18.0, 19.0), "all-on",
                           "pre")
    fig = ablation_chart(table, (18.0, 19.0), 18.5)
    forest, absolute = fig.axes
    assert [t.get_text() for t in forest.get_yticklabels()] == ["pre", "-x"]  # top down
    assert any(len(line.get_xdata()) and line.get_xdata()[0] == 0.0 for line in forest.lines)
    assert [t.get_text() for t in absolute.get_yticklabels()] == ["all-on", "pre", "-x"]
    assert any(line.get_xdata()[0] == 18.5 for line in absolute.lines)


def test_sample_grid_has_three_panels_per_image_and_blank_target_when_unpaired():
    img = torch.rand(3, 8, 8)
    fig = sample_grid([("a", img, img, img), ("b", img, img, None)])
    assert len(fig.axes) == 6
    assert len(fig.axes[5].images) == 0 and len(fig.axes[2].images) == 1


def test_runs_frame_spreads_tags_params_and_metrics_into_columns():
    run = SimpleNamespace(
        info=SimpleNamespace(run_id="r1", run_name="n", status="FINISHED", start_time=0),
        data=SimpleNamespace(tags={"variant": "all-on", "mlflow.user": "x",
                                   "mlflow.parentRunId": "p"},
                             params={"training.seed": "42"}, metrics={"final_psnr": 20.5}))
    df = runs_frame([run])
    assert df.loc[0, "tags.variant"] == "all-on"
    assert df.loc[0, "tags.mlflow.parentRunId"] == "p"
    assert "tags.mlflow.user" not in df.columns
    assert df.loc[0, "params.training.seed"] == "42"
    assert df.loc[0, "metrics.final_psnr"] == 20.5
    assert "params.training.seed" not in runs_frame([run], include_params=False).columns


def _run(name: str, lr: str | None, psnr: float | None, run_id: str) -> SimpleNamespace:
    params = {"training.seed": "1", **({"optim.lr": lr} if lr is not None else {})}
    return SimpleNamespace(
        info=SimpleNamespace(run_id=run_id, run_name=name, status="FINISHED", start_time=0),
        data=SimpleNamespace(tags={"variant": name}, params=params,
                             metrics={"epochs_run": 2.0,
                                      **({"final_psnr": psnr} if psnr is not None else {})}))


RUNS = runs_frame([_run("a", "0.25", 20.0, "r1"), _run("b", "0.1", 22.5, "r2"),
                   _run("parent", None, None, "r3")])


def test_compare_columns_are_name_status_differing_params_run_metrics_and_the_id_last():
    assert compare_columns(RUNS) == ["run_name", "status", "params.optim.lr",
                                     "metrics.final_psnr", "metrics.epochs_run", "run_id"]


def test_compare_view_keeps_the_asked_columns_in_their_order():
    _, shown = compare_view(RUNS, columns="metrics.final_psnr, run_name,tags.variant")
    assert shown == ["metrics.final_psnr", "run_name", "tags.variant"]


def test_compare_view_sorts_descending_with_a_minus_and_puts_missing_values_last():
    table, _ = compare_view(RUNS, sort="-metrics.final_psnr")
    assert list(table["run_name"]) == ["b", "a", "parent"]
    table, _ = compare_view(RUNS, sort="metrics.final_psnr")
    assert list(table["run_name"]) == ["a", "b", "parent"]


def test_compare_view_sorts_text_params_that_are_numbers_as_numbers():
    table, _ = compare_view(RUNS, sort="params.optim.lr")
    assert list(table["params.optim.lr"][:2]) == ["0.1", "0.25"]  # as text, "0.25" < "0.1"


@pytest.mark.parametrize("option, kwargs", [("--columns", {"columns": "run_name,final_psnr"}),
                                            ("--sort", {"sort": "-metrics.final_psnrr"})])
def test_compare_view_refuses_an_unknown_column_naming_the_option_and_the_closest(option, kwargs):
    with pytest.raises(ConfigError, match=rf"^{option}: unknown column .*did you mean "
                                          r"'metrics.final_psnr'\?$"):
        compare_view(RUNS, **kwargs)


def test_rich_table_right_aligns_numbers_and_shows_a_missing_value_as_a_dash():
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(rich_table(RUNS[["run_name", "metrics.final_psnr"]]))
    lines = console.file.getvalue().splitlines()
    assert "run_name" in lines[0] and "metrics.final_psnr" in lines[0]
    cells = [line.split("│") for line in lines[2:]]
    assert [c[0].strip() for c in cells] == ["a", "b", "parent"]
    assert [c[1].rstrip() for c in cells][1].endswith("22.5000")
    assert cells[2][1].strip() == "–"
    assert len({len(c[1].rstrip()) for c in cells}) == 1  # right-aligned: all end in one column
