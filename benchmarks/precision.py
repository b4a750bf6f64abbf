"""Does bf16 autocast train as well as fp32? ``python benchmarks/precision.py [--preset quick]``.

Trains the preset untracked (``runs.train_in_run(None, ...)``) with ``training.precision`` fp32 and
bf16 for each seed in ``--seeds`` (``training.seed``), each run in its own process with one torch
thread (two run side by side on a 2-core machine), and reports the final validation PSNR/SSIM of
each (the metrics of the epoch saved as ``best_model.pth``, as the experiment layer reports them),
the bf16 - fp32 difference per seed and its mean, next to the fp32 seed-to-seed spread (how much a
run moves for reasons other than precision). Writes ``benchmarks/results/precision-<date>.json``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def train_once(preset: str, precision: str, seed: int) -> dict[str, Any]:
    from remdinet.resolve import resolve
    from remdinet.exp.presets import run_overrides
    from remdinet.exp.runs import train_in_run

    torch.set_num_threads(1)
    cfg = resolve({**run_overrides(preset), "training.precision": precision, "training.seed": seed,
                   "training.output_dir": tempfile.mkdtemp(prefix="remdinet-precision-")})
    start = time.perf_counter()
    outcome = train_in_run(None, None, cfg, quiet=True, samples=0)
    return {"precision": precision, "seed": seed, "final": outcome.final, "seconds": time.perf_counter() - start,
            "best_val_psnr": outcome.result.best_val_psnr, "epochs_run": outcome.result.epochs_run}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="quick")
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    p.add_argument("--worker", nargs=3, metavar=("PRESET", "PRECISION", "SEED"),
                   help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.worker:
        print(json.dumps(train_once(opts.worker[0], opts.worker[1], int(opts.worker[2]))))
        return {}
    started = dt.datetime.now().astimezone()
    load_start = os.getloadavg()
    runs: dict[int, dict[str, Any]] = {}
    for seed in opts.seeds:
        procs = {prec: subprocess.Popen([sys.executable, __file__, "--worker", opts.preset, prec,
                                         str(seed)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for prec in ("fp32", "bf16")}
        runs[seed] = {}
        for prec, proc in procs.items():
            out, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"{prec} seed {seed} failed (exit {proc.returncode}):\n"
                                   f"{err[-4000:]}")
            runs[seed][prec] = json.loads(out.strip().splitlines()[-1])
    psnr = {seed: {prec: r["final"]["final_psnr"] for prec, r in by.items()}
            for seed, by in runs.items()}
    diffs = [p["bf16"] - p["fp32"] for p in psnr.values()]
    fp32 = [p["fp32"] for p in psnr.values()]
    report = {"date": started.isoformat(timespec="seconds"), "preset": opts.preset,
              "runs": {str(k): v for k, v in runs.items()},
              "psnr_difference_db": {str(k): d for k, d in zip(psnr, diffs)},
              "mean_psnr_difference_db": sum(diffs) / len(diffs),
              "fp32_seed_spread_db": max(fp32) - min(fp32),
              "load_average": {"start": load_start, "end": os.getloadavg()}}
    out_path = RESULTS_DIR / f"precision-{started.strftime('%Y%m%d-%H%M%S')}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=1), encoding="utf-8")
    for seed, by in runs.items():
        for prec, r in by.items():
            print(f"{opts.preset} seed {seed} {prec}: final val PSNR {r['final']['final_psnr']:.3f} "
                  f"dB, SSIM {r['final']['final_ssim']:.4f}, {r['epochs_run']} epochs, "
                  f"{r['seconds']:.0f} s")
    print(f"bf16 - fp32: {', '.join(f'{d:+.3f}' for d in diffs)} dB (mean "
          f"{report['mean_psnr_difference_db']:+.3f}); fp32 spread over seeds "
          f"{report['fp32_seed_spread_db']:.3f} dB; JSON: {out_path}")
    return report


if __name__ == "__main__":
    main()
