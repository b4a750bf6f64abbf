"""The benchmark scripts run and report consistent figures (no timing is asserted)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_model_bench_reports_flops_times_and_a_conv_split_that_fits_inside_the_step():
    args = {"kind": "model", "batch": 1, "device": "cpu", "threads": 1, "reps": 1, "warmup": 1,
            "compile": False, "size": 64, "precision": "fp32", "channels_last": True,
            "flops": True, "split": True}
    proc = subprocess.run([sys.executable, str(BENCH_DIR / "model_bench.py"), json.dumps(args)],
                          capture_output=True, text=True, cwd=BENCH_DIR.parent, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    flops, split = result["flops"], result["split"]
    assert 0 < flops["forward"] < flops["train_step"]
    assert 0 < split["conv_flops"] <= flops["train_step"]
    assert 0 < split["conv_seconds"] < split["operator_seconds"]
    assert split["conv_gflops_per_second"] == pytest.approx(
        split["conv_flops"] / split["conv_seconds"] / 1e9)
    assert result["train_step"]["min"] <= result["train_step"]["median"] <= result["train_step"]["max"]


def test_split_table_shows_the_conv_share_and_the_bound_against_the_original():
    run = _load("run")
    row = {"args": {"size": 256, "precision": "bf16"}, "train_step": {"median": 0.5},
           "split": {"conv_seconds": 0.2, "conv_gflops_per_second": 1000.0}}
    no_split = {"args": {"size": 256, "precision": "fp32"}, "train_step": {"median": 1.0}}
    lines = run.split_table([row, no_split]).splitlines()
    assert len(lines) == 3
    assert lines[2] == "| 256² | bf16 | 0.500 | 0.200 (40%) | 1000 | 0.300 | 7.40× |"


def test_phase_clock_takes_a_nested_phase_out_of_the_phase_that_calls_it(monkeypatch):
    bench = _load("ablation_bench")
    ticks = iter([0.0, 1.0, 3.0, 10.0])  # outer starts, inner starts, inner ends, outer ends
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(ticks))
    clock = bench.PhaseClock()
    inner = clock.wrap("mlflow", lambda: None)
    clock.wrap("train", inner)()
    assert dict(clock.seconds) == {"mlflow": 2.0, "train": 8.0}


def test_ablation_table_reports_throughput_against_one_worker_and_the_phase_shares():
    table = _load("run").ablation_table([
        {"workers": 1, "cells": 7, "wall_seconds": 350.0, "training_share": 0.9,
         "phases": {"train": 280.0, "validate": 35.0, "other": 35.0}},
        {"workers": 2, "cells": 7, "wall_seconds": 175.0}])
    assert "| 2 | 175 | 25.0 | 2.00× |" in table
    assert "| train | 280.0 | 80.0% |" in table
    assert "training + validation: 90.0%" in table
