"""What the median pruner saves: ``python benchmarks/study_efficiency.py`` (a few minutes).

Runs the ``color_clamps`` study on the tiny preset twice, with the spec's median pruner and with no
pruner, the same number of trials each (default 20) and the same sampler seed, in two processes
side by side (one torch thread each), with SQLite stores in a temporary folder. The tiny preset's 4
epochs end before the pruner's warm-up (``n_warmup_steps`` = 4), so the trials train for
``--epochs`` (12) epochs, validated every epoch.

Compute used = the sum over trials of the epochs each trained (a pruned trial stops at the epoch
where it was pruned); quality = the best objective (final val PSNR) of the completed trials.
Writes ``benchmarks/results/study_efficiency-<date>.{json,png}``: the best PSNR so far against the
cumulative epochs of both studies.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def run_one(pruner: str, n_trials: int, epochs: int, workdir: Path) -> dict[str, Any]:
    import optuna
    import torch
    from optuna.trial import TrialState

    from remdinet.exp.study import run_study
    from remdinet.exp.studyspec import load_spec
    from remdinet.exp.tracking import quiet_loggers

    torch.set_num_threads(1)
    quiet_loggers()
    spec = load_spec("color_clamps", preset="tiny", overrides={
        "training.num_epochs": epochs, "training.output_dir": str(workdir / "outputs")})
    if pruner == "none":
        spec = dataclasses.replace(spec, pruner="none", pruner_options={})
    spec = dataclasses.replace(spec, name=f"color_clamps_tiny_{pruner}")
    storage = f"sqlite:///{workdir / 'optuna.db'}"
    start = time.perf_counter()
    run_study(spec, storage, f"sqlite:///{workdir / 'mlflow.db'}", n_trials=n_trials, quiet=True,
              log=lambda _msg: None)
    seconds = time.perf_counter() - start
    trials = []
    for t in optuna.load_study(study_name=spec.name, storage=storage).trials:
        # every epoch is validated, so the reported steps are the epochs the trial trained
        trained = max(t.intermediate_values) + 1 if t.intermediate_values else 0
        trials.append({"number": t.number, "state": t.state.name, "epochs": trained,
                       "value": t.value if t.state == TrialState.COMPLETE else None,
                       "seconds": t.duration.total_seconds() if t.duration else None})
    done = [t["value"] for t in trials if t["value"] is not None]
    return {"pruner": spec.pruner, "pruner_options": spec.pruner_options, "trials": trials,
            "epochs_total": sum(t["epochs"] for t in trials), "best_psnr": max(done),
            "completed": len(done), "pruned": sum(t["state"] == "PRUNED" for t in trials),
            "seconds": seconds}


def best_so_far(study: dict[str, Any]) -> tuple[list[int], list[float]]:
    xs, ys, used, best = [], [], 0, float("-inf")
    for t in study["trials"]:
        used += t["epochs"]
        if t["value"] is not None:
            best = max(best, t["value"])
        if best > float("-inf"):
            xs.append(used)
            ys.append(best)
    return xs, ys


def figure(studies: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, s in studies.items():
        xs, ys = best_so_far(s)
        ax.step(xs, ys, where="post", marker="o", markersize=3,
                label=f"{name}: {s['epochs_total']} epochs, best {s['best_psnr']:.2f} dB")
    ax.set_xlabel("cumulative training epochs (compute used)")
    ax.set_ylabel("best final val PSNR so far (dB)")
    ax.set_title(f"color_clamps on the tiny preset, {len(next(iter(studies.values()))['trials'])} "
                 f"trials")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--worker", nargs=2, metavar=("PRUNER", "WORKDIR"), help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.worker:
        print(json.dumps(run_one(opts.worker[0], opts.trials, opts.epochs, Path(opts.worker[1]))))
        return {}
    started = dt.datetime.now().astimezone()
    load_start = os.getloadavg()
    procs = {}
    for pruner in ("median", "none"):
        work = Path(tempfile.mkdtemp(prefix=f"remdinet-study-{pruner}-"))
        procs[pruner] = subprocess.Popen(
            [sys.executable, __file__, "--worker", pruner, str(work), "--trials", str(opts.trials),
             "--epochs", str(opts.epochs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    studies = {}
    for pruner, proc in procs.items():
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"study with pruner {pruner} failed (exit {proc.returncode}):\n"
                               f"{err[-4000:]}")
        studies[pruner] = json.loads(out.strip().splitlines()[-1])
    med, none = studies["median"], studies["none"]
    report = {"date": started.isoformat(timespec="seconds"), "trials": opts.trials,
              "epochs": opts.epochs, "studies": studies,
              "compute_saving_percent": 100.0 * (1 - med["epochs_total"] / none["epochs_total"]),
              "best_psnr_difference_db": med["best_psnr"] - none["best_psnr"],
              "load_average": {"start": load_start, "end": os.getloadavg()}}
    stem = f"study_efficiency-{started.strftime('%Y%m%d-%H%M%S')}"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    figure(studies, RESULTS_DIR / f"{stem}.png")
    for name, s in studies.items():
        print(f"pruner {name}: {s['epochs_total']} epochs in {len(s['trials'])} trials "
              f"({s['completed']} complete, {s['pruned']} pruned), best PSNR {s['best_psnr']:.3f} dB, "
              f"{s['seconds']:.0f} s")
    print(f"median pruner saves {report['compute_saving_percent']:.0f} % of the epochs; best PSNR "
          f"{report['best_psnr_difference_db']:+.3f} dB vs no pruner; figure "
          f"{RESULTS_DIR / (stem + '.png')}")
    return report


if __name__ == "__main__":
    main()
