"""Ablation throughput: the quick-preset leave-one-out ablation (7 variants x 1 seed) end to end,
and where a variant's wall time goes (run by benchmarks/run.py, or alone:
``python benchmarks/ablation_bench.py '{"workers": 1}'``).

Each measurement is one ``remdi-exp ablate --preset quick`` in a fresh temporary folder (new MLflow
and Optuna SQLite stores), timed from the process start, imports included, as a user waits for it.

* ``workers`` 1: the ablation runs inside this process (the engine's one-worker path) with the
  phases below timed. A phase's time excludes the phases it calls, so they add up to the wall time.
  ``train``: the training epochs (loading batches, forward, loss, backward, optimiser steps);
  ``validate``: the validation passes (forward and metrics); ``checkpoint``: writing checkpoints;
  ``mlflow``: every call of the MLflow tracker (params, metrics, tags, artifacts);
  ``samples``: enhancing and drawing the sample grid; ``data``: building the data set;
  ``other``: the rest (imports, stores, Optuna, model construction, the ablation table).
* ``workers`` > 1: ``remdi-exp ablate`` as a child process with ``--workers N`` (its wall time only;
  the workers are other processes).
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

PROCESS_START = time.perf_counter()
ABLATE = ["--quiet", "ablate", "--preset", "quick"]


class PhaseClock:
    """Exclusive time per phase: a phase entered inside another is taken out of the outer one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list[float]] = []  # [start, time of the inner phases]

    def wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append([time.perf_counter(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                start, inner = self._stack.pop()
                spent = time.perf_counter() - start
                self.seconds[phase] += spent - inner
                if self._stack:
                    self._stack[-1][1] += spent
        return timed


@contextlib.contextmanager
def instrumented(clock: PhaseClock) -> Iterator[None]:
    from remdinet.exp import runs
    from remdinet.exp.engine import _engine
    from remdinet.exp.tracking import Tracker
    from remdinet.training import trainer as trainer_mod

    patches: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, phase: str) -> None:
        original = getattr(owner, name)
        patches.append((owner, name, original))
        setattr(owner, name, clock.wrap(phase, original))

    patch(trainer_mod.Trainer, "_train_epoch", "train")
    patch(trainer_mod.Trainer, "_validate", "validate")
    patch(trainer_mod.Trainer, "_save", "checkpoint")
    patch(trainer_mod, "build_data", "data")
    patch(_engine, "build_data", "data")
    for name, member in vars(Tracker).items():
        if callable(member) and not name.startswith("_"):
            patch(Tracker, name, "mlflow")
    patch(runs, "sample_rows", "samples")
    patch(runs, "sample_grid", "samples")
    try:
        yield
    finally:
        for owner, name, original in reversed(patches):
            setattr(owner, name, original)


def in_process(folder: Path) -> dict[str, Any]:
    from remdinet.exp.cli import app
    import typer

    clock = PhaseClock()
    os.chdir(folder)
    with instrumented(clock):
        typer.main.get_command(app)(ABLATE, standalone_mode=False)
    wall = time.perf_counter() - PROCESS_START
    phases = dict(clock.seconds)
    phases["other"] = wall - sum(phases.values())
    return {"wall_seconds": wall, "phases": phases,
            "training_share": (phases.get("train", 0.0) + phases.get("validate", 0.0)) / wall}


def child(folder: Path, workers: int) -> dict[str, Any]:
    exe = Path(sys.executable).with_name("remdi-exp")
    start = time.perf_counter()
    proc = subprocess.run([str(exe), *ABLATE, "--workers", str(workers)], cwd=folder,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"remdi-exp ablate --workers {workers} failed (exit {proc.returncode}):"
                           f"\n{proc.stderr[-4000:]}")
    return {"wall_seconds": wall}


def main(args: dict[str, Any]) -> dict[str, Any]:
    workers = int(args.get("workers", 1))
    out: dict[str, Any] = {"workers": workers, "cells": 7, "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="remdinet-ablation-bench-") as tmp:
        out.update(in_process(Path(tmp)) if workers == 1 else child(Path(tmp), workers))
    out["load_average_after"] = os.getloadavg()
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})))
