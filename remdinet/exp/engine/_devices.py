"""Which device each worker process trains on.

A worker is pinned to one CUDA device by ``CUDA_VISIBLE_DEVICES`` in its environment, set before
the process starts (so before torch can initialise CUDA): inside the worker that device is
``cuda:0``, and the config's ``training.device`` (``auto`` or ``cuda``) picks it. Devices are
dealt round robin. The device set is a property of this machine, not of the study: it is never
part of a study's fingerprint, so a machine with other GPUs can ``--join``.
"""
from __future__ import annotations

import os

import torch

from remdinet.config import ConfigError

VISIBLE = "CUDA_VISIBLE_DEVICES"


def parse_gpus(text: str | None) -> tuple[int, ...] | None:
    """``"0,1,3"`` -> (0, 1, 3); None or empty -> None (the default of the machine)."""
    if not text:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--gpus expects device indices like 0,1,2, got {text!r}") from None


def default_gpus(device: str) -> tuple[int, ...]:
    """Every visible CUDA device when the run may use CUDA (``training.device`` auto or cuda*);
    none on a CPU-only machine or a CPU run. ``device_count`` does not initialise CUDA."""
    if device == "cpu" or not torch.cuda.is_available():
        return ()
    return tuple(range(torch.cuda.device_count()))


def worker_envs(n_workers: int, gpus: tuple[int, ...]) -> list[dict[str, str]]:
    """The environment each worker adds: ``CUDA_VISIBLE_DEVICES`` of its device, round robin;
    nothing without GPUs."""
    if not gpus:
        return [{} for _ in range(n_workers)]
    return [{VISIBLE: str(gpus[i % len(gpus)])} for i in range(n_workers)]


def device_tags(index: int | None) -> dict[str, str]:
    """Tags naming this worker process and the device set it was pinned to (the device a run
    actually trained on is its ``device`` tag, set by the run itself)."""
    visible = os.environ.get(VISIBLE)
    return {"worker_index": "main" if index is None else str(index),
            "cuda_visible_devices": visible if visible is not None else "(unset)"}
