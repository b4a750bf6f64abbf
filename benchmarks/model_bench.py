"""Speed, FLOPs and memory of one model configuration, measured in a process of its own.

``benchmarks/run.py`` starts ``python benchmarks/model_bench.py '<json>'`` once per configuration, so
that the peak RSS belongs to that configuration alone, and reads the JSON line it prints last.

Definitions (the ones of the speed issue):

* train step: forward + stage-2 loss (``build_stage_loss(2, ...)``) + backward + AdamW step of the
  default model (post-fix, every fix on, random-init backbone), batch 2, ``zero_grad`` included. The
  input is denormalised inside the step, as the trainer does per batch; fp16 (CUDA only) scales the
  loss with a ``GradScaler`` as the trainer does;
* inference: eval-mode forward under ``no_grad``;
* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` (convolutions, matmuls, attention) of one
  eval forward and of one forward + loss + backward; the same for every precision;
* times: wall clock, ``reps`` repetitions after ``warmup`` untimed ones; median, min and max;
* time split (CPU): one profiled train step (``torch.profiler``) divided into convolution kernels
  (forward and backward) and everything else, with the convolutions' own GFLOP/s. It shows where a
  faster step has to come from: the convolutions' FLOPs are fixed by the architecture.

The process configures itself as the trainer does on CPU (flush denormals, keep freed memory,
``training.precision`` autocast), so the figures are those of a training run.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from remdinet.colour import denormalize, normalize
from remdinet.fixes import fixes_of
from remdinet.losses import build_stage_loss
from remdinet.model import build_model
from remdinet.resolve import resolve
from remdinet.training.device import autocast, autocast_dtype, keep_freed_memory, resolve_device
from remdinet.training.optim import build_optimizer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, warmup: int, reps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def stats(times: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "reps": len(times), "all": times}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class Setup:
    """Model, loss, optimiser and one fixed batch of the default configuration."""

    def __init__(self, args: dict[str, Any]):
        self.device = resolve_device(args["device"])
        torch.set_num_threads(args["threads"])
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)
            keep_freed_memory()
        torch.manual_seed(0)
        self.cfg = resolve({"model.channels_last": args["channels_last"]})
        self.model = build_model(self.cfg).to(self.device)
        self.forward = torch.compile(self.model) if args["compile"] else self.model
        self.loss = build_stage_loss(2, self.cfg, fixes_of(self.cfg), self.model).to(self.device)
        self.optimizer = build_optimizer(self.model, self.cfg)
        # the trainer's precision rules: fp16 only on CUDA, with loss scaling as the trainer does it
        self.dtype = autocast_dtype(args["precision"], self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        g = torch.Generator().manual_seed(0)
        b, s = args["batch"], args["size"]
        self.x = normalize(torch.rand(b, 3, s, s, generator=g) * 0.3).to(self.device)
        self.target = torch.rand(b, 3, s, s, generator=g).to(self.device)

    def train_step(self) -> None:
        with autocast(self.device, self.dtype):
            out = self.forward(self.x)
            total = self.loss(out, self.target, denormalize(self.x)).total
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def infer(self) -> None:
        with torch.no_grad(), autocast(self.device, self.dtype):
            self.forward(self.x)


def count_flops(setup: Setup) -> dict[str, float]:
    """FLOPs of one eval forward, of one train step, and of the convolutions in that train step."""
    setup.model.eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        setup.model(setup.x)
    forward = fc.get_total_flops()
    setup.model.train()
    with FlopCounterMode(display=False) as fc:
        out = setup.model(setup.x)
        setup.loss(out, setup.target, denormalize(setup.x)).total.backward()
    setup.optimizer.zero_grad(set_to_none=True)
    conv = sum(v for op, v in fc.get_flop_counts()["Global"].items() if "convolution" in str(op))
    return {"forward": forward, "train_step": fc.get_total_flops(), "train_step_conv": conv}


CONV_OPS = ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution",
            "aten::conv_depthwise2d", "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward")


def time_split(setup: Setup, conv_flops: float) -> dict[str, float]:
    """Self CPU time of the convolution kernels in one profiled train step, against the whole step.

    CPU only: on CUDA the kernels carry cuDNN's names, not the aten operators'.
    """
    from torch.profiler import ProfilerActivity, profile

    setup.model.train()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        setup.train_step()
    events = prof.key_averages()
    ops = sum(e.self_cpu_time_total for e in events) / 1e6
    conv = sum(e.self_cpu_time_total for e in events if e.key in CONV_OPS) / 1e6
    return {"conv_seconds": conv, "operator_seconds": ops, "conv_flops": conv_flops,
            "conv_gflops_per_second": conv_flops / conv / 1e9}


def measure_model(args: dict[str, Any]) -> dict[str, Any]:
    load_before = os.getloadavg()
    setup = Setup(args)
    result: dict[str, Any] = {"args": args, "device": str(setup.device)}
    split = args.get("split") and setup.device.type == "cpu"
    flops = count_flops(setup) if args["flops"] or split else None
    if args["flops"]:
        result["flops"] = flops
    setup.model.train()
    if args["compile"]:
        start = time.perf_counter()
        setup.train_step()
        result["first_step_seconds"] = time.perf_counter() - start
    result["train_step"] = stats(timed(setup.train_step, setup.device, args["warmup"], args["reps"]))
    setup.model.eval()
    result["inference"] = stats(timed(setup.infer, setup.device, args["warmup"], args["reps"]))
    result["peak_memory_mb"] = peak_memory_mb(setup.device)
    if split:
        result["split"] = time_split(setup, flops["train_step_conv"])
    result["load_average"] = {"before": load_before, "after": os.getloadavg()}
    return result


def measure_stability(args: dict[str, Any]) -> dict[str, Any]:
    """Per-step times of ``steps`` consecutive training steps (denormals, allocator growth and
    anything else that accumulates would show as a slower tail)."""
    load_before = os.getloadavg()
    setup = Setup(args)
    setup.model.train()
    times = timed(setup.train_step, setup.device, args["warmup"], args["steps"])
    k = args["window"]
    first, last = statistics.median(times[:k]), statistics.median(times[-k:])
    return {"args": args, "device": str(setup.device), "step_seconds": times,
            "first_median": first, "last_median": last, "last_over_first": last / first,
            "flush_denormal": setup.device.type != "cpu" or torch.set_flush_denormal(True),
            "load_average": {"before": load_before, "after": os.getloadavg()}}


def main() -> None:
    args = json.loads(sys.argv[1])
    result = measure_stability(args) if args["kind"] == "stability" else measure_model(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
