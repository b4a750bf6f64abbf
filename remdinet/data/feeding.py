"""How the loaders feed the training device: worker processes, pinned memory, persistent workers.

``training.num_workers`` = :data:`AUTO_WORKERS` (-1, the default) picks the count from the device:

* CPU: 0. Worker processes would take cores from the training step's own intra-op threads, and
  the embedded set is decoded once and cached, so the main process keeps up with a CPU step.
* CUDA: up to :data:`MAX_AUTO_WORKERS`, never more than half the CPUs this process may run on. While
  the GPU runs a step, the workers decode and augment the next batches; the cap leaves cores to the
  main process and to the other study workers that share a machine (``--workers-per-gpu``).

Pinned (page-locked) host memory is used on CUDA only: it is what makes the trainer's
``non_blocking`` host-to-device copies asynchronous, and on CPU it would only cost page locking.
Workers persist across epochs whenever there are any, so each epoch does not start new processes
(and, under the ``spawn``/``forkserver`` start methods, pickle the decoded cache into each again).

A batch does not depend on any of this: see :mod:`.dataset`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

AUTO_WORKERS = -1
MAX_AUTO_WORKERS = 4


@dataclass(frozen=True)
class Feeding:
    num_workers: int
    pin_memory: bool
    persistent_workers: bool


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, e.g. in a container
    limited to some cores), not the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def auto_workers(device_type: str, cpus: int) -> int:
    """The worker count that ``num_workers = -1`` means on ``device_type`` with ``cpus`` CPUs."""
    if device_type != "cuda":
        return 0
    return max(1, min(MAX_AUTO_WORKERS, cpus // 2))


def feeding(num_workers: int, device_type: str, cpus: int | None = None) -> Feeding:
    """Loader settings for ``training.num_workers`` on a device of type ``device_type``."""
    if num_workers == AUTO_WORKERS:
        num_workers = auto_workers(device_type, available_cpus() if cpus is None else cpus)
    return Feeding(num_workers=num_workers, pin_memory=device_type == "cuda",
                   persistent_workers=num_workers > 0)
