"""The benchmark suite: ``python benchmarks/run.py`` (``make bench``); see benchmarks/README.md.

Prints a Markdown table and writes everything it measured, with the machine description and the
load average, to ``benchmarks/results/bench-<date>.json``. Each model configuration runs in a fresh
process (``model_bench.py``), so peak memory is per configuration.

Rows: the default model (post-fix, random-init backbone, batch 2) at each size in fp32 and bf16
autocast with the default channels_last layout, plus fp32/bf16 in NCHW at 256² (the layout's
effect); on CUDA the same with AMP (bf16). Then: 50 consecutive training steps (a slower tail would
show accumulating costs), data-loader throughput, the tracking overhead of one tiny trial, and the
quick-preset 7-variant ablation's wall time with 1 and 2 workers and where it goes
(``ablation_bench.py``; about 10 minutes on 2 cores, ``--skip-ablation`` leaves it out).
``--compile`` adds torch.compile rows (minutes of compilation each on a 2-core CPU).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"

# The original RemDiNet code as measured in the speed issue on this machine kind (Xeon, AVX-512 and
# AMX-bf16, 2 threads, fp32, batch 2): size -> (train step s, inference s).
ORIGINAL_SECONDS = {128: (0.33, 0.096), 256: (1.48, 0.40), 512: (10.1, 2.28)}


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "torch": torch.__version__, "cpu_count": os.cpu_count(),
                            "torch_threads": torch.get_num_threads(),
                            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines()
        names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
        flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
        info["cpu_model"] = names[0] if names else ""
        info["cpu_flags"] = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
                             if f in flags]
    if hasattr(os, "sysconf"):
        info["memory_gb"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def run_worker(script: str, args: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(BENCH_DIR / script), json.dumps(args)],
                          capture_output=True, text=True, cwd=BENCH_DIR.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} {args} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def model_rows(opts: argparse.Namespace, device: str) -> list[dict[str, Any]]:
    base = {"kind": "model", "batch": opts.batch, "device": device, "threads": opts.threads,
            "reps": opts.reps, "warmup": opts.warmup, "compile": False}
    plan = []
    if not opts.compile_only:
        for size in opts.sizes:
            for precision in opts.precisions:
                plan.append({**base, "size": size, "precision": precision, "channels_last": True,
                             "flops": precision == opts.precisions[0], "split": True})
    if opts.layout_size and not opts.compile_only:
        for precision in opts.precisions:
            plan.append({**base, "size": opts.layout_size, "precision": precision,
                         "channels_last": False, "flops": False})
    if opts.compile or opts.compile_only:
        for precision in opts.precisions:
            plan.append({**base, "size": opts.layout_size or opts.sizes[0], "precision": precision,
                         "channels_last": True, "compile": True,
                         "flops": opts.compile_only and precision == opts.precisions[0]})
    rows = []
    for args in plan:
        print(f"  model {args['size']}² {args['precision']} "
              f"{'channels_last' if args['channels_last'] else 'NCHW'}"
              f"{' compiled' if args['compile'] else ''} ...", flush=True)
        rows.append(run_worker("model_bench.py", args))
    flops = {r["args"]["size"]: r["flops"] for r in rows if "flops" in r}
    for r in rows:
        r.setdefault("flops", flops.get(r["args"]["size"]))
    return rows


def derived(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios against the original code's times and between sizes."""
    out: dict[str, Any] = {}
    main = {(r["args"]["size"], r["args"]["precision"]): r for r in rows
            if r["args"]["channels_last"] and not r["args"]["compile"]}
    for (size, precision), r in main.items():
        if size in ORIGINAL_SECONDS and r["device"] == "cpu":
            train, infer = ORIGINAL_SECONDS[size]
            out[f"speedup_train_{size}_{precision}"] = train / r["train_step"]["median"]
            out[f"speedup_inference_{size}_{precision}"] = infer / r["inference"]["median"]
    for precision in {p for _, p in main}:
        if (256, precision) in main and (512, precision) in main:
            out[f"train_512_over_256_{precision}"] = (main[(512, precision)]["train_step"]["median"]
                                                      / main[(256, precision)]["train_step"]["median"])
    return out


def _span(s: dict[str, Any]) -> str:
    return f"{s['median']:.3f} ({s['min']:.3f}–{s['max']:.3f})"


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| size | precision | layout | inference s, median (min–max) | train step s, median "
            "(min–max) | train img/s | GFLOP fwd / step | train GFLOP/s | peak MB (CPU: RSS, CUDA: "
            "allocated) | train vs original |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        a = r["args"]
        step = r["train_step"]["median"]
        fl = r["flops"]
        layout = ("channels_last" if a["channels_last"] else "NCHW") + (", compiled" if a["compile"]
                                                                        else "")
        # the original was measured on this CPU machine kind only
        original = ORIGINAL_SECONDS.get(a["size"], (None, None))[0] if r["device"] == "cpu" else None
        lines.append(
            f"| {a['size']}² | {a['precision']} | {layout} | {_span(r['inference'])} | "
            f"{_span(r['train_step'])} | {a['batch'] / step:.1f} | "
            f"{fl['forward'] / 1e9:.1f} / {fl['train_step'] / 1e9:.0f} | "
            f"{fl['train_step'] / step / 1e9:.0f} | {r['peak_memory_mb']:.0f} | "
            f"{f'{original / step:.2f}×' if original else '–'} |")
    return "\n".join(lines)


def split_table(rows: list[dict[str, Any]]) -> str:
    """Where the train step goes: convolution kernels against everything else (CPU rows only)."""
    head = ("| size | precision | train step s | convolutions s (share) | conv GFLOP/s | everything "
            "else s | original ÷ convolutions alone |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if "split" not in r:
            continue
        a, sp = r["args"], r["split"]
        step = r["train_step"]["median"]
        conv = sp["conv_seconds"]
        original = ORIGINAL_SECONDS.get(a["size"], (None, None))[0]
        bound = f"{original / conv:.2f}×" if original else "–"
        lines.append(
            f"| {a['size']}² | {a['precision']} | {step:.3f} | {conv:.3f} ({conv / step:.0%}) | "
            f"{sp['conv_gflops_per_second']:.0f} | {step - conv:.3f} | {bound} |")
    return "\n".join(lines)


def ablation_table(rows: list[dict[str, Any]]) -> str:
    """Wall time per worker count, and the phases of the one-worker run (ablation_bench.py)."""
    first = rows[0]["wall_seconds"]
    lines = ["| workers | wall s | s per cell | throughput vs 1 worker |", "|---|---|---|---|"]
    lines += [f"| {r['workers']} | {r['wall_seconds']:.0f} | {r['wall_seconds'] / r['cells']:.1f} | "
              f"{first / r['wall_seconds']:.2f}× |" for r in rows]
    timed = next((r for r in rows if "phases" in r), None)
    if timed is not None:
        wall = timed["wall_seconds"]
        lines += ["", "| phase (1 worker) | s | share |", "|---|---|---|"]
        lines += [f"| {phase} | {sec:.1f} | {sec / wall:.1%} |"
                  for phase, sec in sorted(timed["phases"].items(), key=lambda kv: -kv[1])]
        lines.append(f"\ntraining + validation: {timed['training_share']:.1%} of the wall time")
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"],
                   choices=["fp32", "bf16", "fp16"], help="fp16 (CUDA only) with a gradient scaler")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--reps", type=int, default=5, help="timed repetitions (after --warmup)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="torch threads of the model benchmarks (default: one per core)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--layout-size", type=int, default=256,
                   help="size of the NCHW comparison rows (0 = none)")
    p.add_argument("--stability-steps", type=int, default=50)
    p.add_argument("--compile", action="store_true", help="add torch.compile rows (slow)")
    p.add_argument("--compile-only", action="store_true",
                   help="only the torch.compile rows (so that a caller can bound them separately)")
    p.add_argument("--skip-pipeline", action="store_true",
                   help="leave out the loader and tracking measurements")
    p.add_argument("--tracking-reps", type=int, default=3)
    p.add_argument("--skip-ablation", action="store_true",
                   help="leave out the quick-preset ablation (about 10 minutes on 2 cores)")
    p.add_argument("--ablation-workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", type=Path, default=None, help="JSON path (default: results/bench-<date>.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    opts = parse(argv)
    device = "cuda" if opts.device == "auto" and torch.cuda.is_available() else (
        "cpu" if opts.device == "auto" else opts.device)
    started = dt.datetime.now().astimezone()
    report: dict[str, Any] = {"date": started.isoformat(timespec="seconds"), "machine": machine(),
                              "options": {k: (str(v) if isinstance(v, Path) else v)
                                          for k, v in vars(opts).items()},
                              "device": device, "load_average_start": os.getloadavg()}
    print(f"benchmark on {report['machine'].get('cpu_model', platform.processor())}, device "
          f"{device}, {opts.threads} threads, load average {os.getloadavg()[0]:.2f}", flush=True)
    report["rows"] = model_rows(opts, device)
    report["derived"] = derived(report["rows"])
    if opts.stability_steps:
        print(f"  stability: {opts.stability_steps} training steps at 128² fp32 ...", flush=True)
        report["stability"] = run_worker("model_bench.py", {
            "kind": "stability", "size": 128, "batch": opts.batch, "precision": "fp32",
            "channels_last": True, "device": device, "threads": opts.threads, "warmup": 2,
            "steps": opts.stability_steps, "window": 10, "compile": False})
    if not opts.skip_pipeline:
        print("  data loader ...", flush=True)
        report["loader"] = run_worker("pipeline_bench.py", {"kind": "loader", "threads": 1})
        print("  tracking overhead ...", flush=True)
        report["tracking"] = run_worker("pipeline_bench.py", {"kind": "tracking", "threads": 1,
                                                              "reps": opts.tracking_reps})
    if not opts.skip_ablation:
        report["ablation"] = []
        for workers in opts.ablation_workers:
            print(f"  quick-preset ablation, 7 cells, {workers} worker(s) ...", flush=True)
            report["ablation"].append(run_worker("ablation_bench.py", {"workers": workers}))
    report["load_average_end"] = os.getloadavg()
    report["seconds"] = (dt.datetime.now().astimezone() - started).total_seconds()

    out = opts.out or RESULTS_DIR / f"bench-{started.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print()
    print(table(report["rows"]))
    print()
    if any("split" in r for r in report["rows"]):
        print(split_table(report["rows"]))
        print()
    for key, value in report["derived"].items():
        print(f"{key}: {value:.2f}")
    if "stability" in report:
        s = report["stability"]
        print(f"stability: median of the last 10 of {opts.stability_steps} steps / first 10 = "
              f"{s['last_over_first']:.2f}")
    if "loader" in report:
        lo = report["loader"]
        print(f"loader ({lo['image_size']} px, batch {lo['batch_size']}): "
              f"{lo['cached']['images_per_second']:.0f} img/s cached, "
              f"{lo['uncached']['images_per_second']:.0f} img/s uncached")
    if "tracking" in report:
        tr = report["tracking"]
        print(f"tracking overhead of one tiny trial: {tr['overhead_percent']:.0f} % "
              f"({tr['untracked_median']:.2f} s untracked, {tr['tracked_median']:.2f} s as a "
              f"tracked study trial; {tr['study_call_overhead_percent']:.0f} % counting the whole "
              f"one-trial `study run` call)")
    if "ablation" in report:
        print()
        print(ablation_table(report["ablation"]))
    print(f"load average {report['load_average_start'][0]:.2f} at start, "
          f"{report['load_average_end'][0]:.2f} at end; {report['seconds']:.0f} s; JSON: {out}")
    return report


if __name__ == "__main__":
    main()
