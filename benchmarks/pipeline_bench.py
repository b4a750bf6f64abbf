"""Data-loader throughput and the tracking overhead of one trial (run by benchmarks/run.py).

* Loader: images per second of one training epoch of the embedded synthetic set (augmentation on,
  ``num_workers`` 0 as in the presets), with decode-once caching (``data.cache_decoded``) on and off;
  the time to build the data set is reported separately.
* Feed (``kind: "feed"``, run by benchmarks/gpu_check.sh): images per second that the training
  loader delivers onto a device for each ``num_workers``, with the pinned memory and persistent
  workers ``make_loader`` chooses for that device; every batch is copied with ``non_blocking`` as the
  trainer does and the device synchronised before an epoch's clock stops. The first epoch (worker
  start-up included) is reported apart from the median of the later ones.
* Tracking: the same tiny-preset trial run (a) untracked, ``runs.train_in_run(None, ...)``, and (b) as
  a trial of an Optuna study whose trials are MLflow child runs (``study.run_study``, SQLite stores
  in a temporary folder; the trial's own duration as Optuna records it). Trials and untracked runs
  alternate, so a change of machine load hits both alike. The study's baseline trial uses the
  preset's own values; later trials change a clamp bound only, which costs the same compute.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import torch

from remdinet.data import build_data, make_loader
from remdinet.resolve import resolve
from remdinet.training.device import resolve_device


def loader_throughput(image_size: int = 128, batch: int = 8, epochs: int = 2) -> dict[str, Any]:
    out: dict[str, Any] = {"image_size": image_size, "batch_size": batch,
                           "load_average_before": os.getloadavg()}
    for cache in (True, False):
        cfg = resolve({"training.image_size": image_size, "training.batch_size": batch,
                       "data.cache_decoded": cache})
        start = time.perf_counter()
        data = build_data(cfg, log=lambda _msg: None)
        build = time.perf_counter() - start
        loader = make_loader(data.train, cfg, train=True)
        rates = []
        for _ in range(epochs):
            start = time.perf_counter()
            images = sum(batch_["input"].shape[0] for batch_ in loader)
            rates.append(images / (time.perf_counter() - start))
        out["cached" if cache else "uncached"] = {
            "build_seconds": build, "images_per_epoch": len(data.train),
            "images_per_second": statistics.median(rates), "per_epoch": rates}
    out["load_average_after"] = os.getloadavg()
    return out


def feed_throughput(device: str, workers: list[int], image_size: int = 256, batch: int = 8,
                    crops: int = 16, epochs: int = 4) -> dict[str, Any]:
    """Rows of images per second onto ``device``, one per ``num_workers`` in ``workers``.

    The embedded set is written at ``image_size`` with ``crops`` crops per source image, so that an
    epoch has enough batches to time (the default set has one or two batches of 8)."""
    dev = resolve_device(device)
    base = {"training.image_size": image_size, "training.batch_size": batch,
            "synthetic.size": image_size, "synthetic.crops_per_image": crops}
    data = build_data(resolve(base), log=lambda _msg: None)
    out: dict[str, Any] = {"device": str(dev), "image_size": image_size, "batch_size": batch,
                           "images_per_epoch": len(data.train), "rows": [],
                           "load_average_before": os.getloadavg()}
    for n in workers:
        cfg = resolve({**base, "training.num_workers": n})
        loader = make_loader(data.train, cfg, train=True, device=dev)
        rates = []
        for _ in range(epochs):
            start = time.perf_counter()
            images = 0
            for batch_ in loader:
                images += batch_["input"].to(dev, non_blocking=True).shape[0]
                batch_["target"].to(dev, non_blocking=True)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            rates.append(images / (time.perf_counter() - start))
        out["rows"].append({"num_workers": loader.num_workers, "pin_memory": loader.pin_memory,
                            "persistent_workers": loader.persistent_workers,
                            "first_epoch_images_per_second": rates[0],
                            "images_per_second": statistics.median(rates[1:]), "per_epoch": rates})
        del loader  # its persistent workers end here, not while the next row is timed
    out["load_average_after"] = os.getloadavg()
    return out


_SPEC = """\
[study]
name = "bench_tracking"
preset = "tiny"
metric = "psnr"
direction = "maximize"
sampler = "random"
pruner = "none"
seed = 0
baseline = true

[space."clamps.affine_bias_max"]
type = "float"
low = 0.01
high = 0.03
"""


def tracking_overhead(reps: int = 3) -> dict[str, Any]:
    # the experiment layer is imported here only: the model benchmarks must not pay for it
    import optuna

    from remdinet.exp.presets import run_overrides
    from remdinet.exp.runs import train_in_run
    from remdinet.exp.study import run_study
    from remdinet.exp.studyspec import load_spec
    from remdinet.exp.tracking import quiet_loggers

    quiet_loggers()
    work = Path(tempfile.mkdtemp(prefix="remdinet-bench-"))
    spec_path = work / "bench_tracking.toml"
    spec_path.write_text(textwrap.dedent(_SPEC), encoding="utf-8")
    overrides = {"training.output_dir": str(work / "outputs")}
    spec = load_spec(spec_path, overrides=overrides)
    cfg = resolve({**run_overrides("tiny"), **overrides})
    storage = f"sqlite:///{work / 'optuna.db'}"
    tracking = f"sqlite:///{work / 'mlflow.db'}"
    load_before = os.getloadavg()
    train_in_run(None, None, cfg, quiet=True)  # warm-up: first-call costs belong to neither side

    untracked, tracked, study_wall = [], [], []
    for _ in range(reps):
        start = time.perf_counter()
        train_in_run(None, None, cfg, quiet=True)
        untracked.append(time.perf_counter() - start)
        start = time.perf_counter()
        run_study(spec, storage, tracking, n_trials=1, quiet=True, log=lambda _msg: None)
        study_wall.append(time.perf_counter() - start)
        trial = optuna.load_study(study_name=spec.name, storage=storage).trials[-1]
        tracked.append(trial.duration.total_seconds())
    u, t = statistics.median(untracked), statistics.median(tracked)
    return {"untracked_seconds": untracked, "tracked_trial_seconds": tracked,
            "study_call_seconds": study_wall, "untracked_median": u, "tracked_median": t,
            "overhead_percent": 100.0 * (t - u) / u,
            "study_call_overhead_percent": 100.0 * (statistics.median(study_wall) - u) / u,
            "threads": torch.get_num_threads(), "workdir": str(work),
            "load_average": {"before": load_before, "after": os.getloadavg()}}


def main() -> None:
    args = json.loads(sys.argv[1])
    torch.set_num_threads(args["threads"])
    if args["kind"] == "loader":
        result = loader_throughput()
    elif args["kind"] == "feed":
        result = feed_throughput(args["device"], args["workers"])
    else:
        result = tracking_overhead(args["reps"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
