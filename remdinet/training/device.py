"""Device, precision and seeding of a training run."""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from ..config import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an explicit CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"training.device: {name!r} requested but CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"training.device: {name!r} is not auto, cpu, cuda or cuda:N")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``training.precision`` on ``device``; None = full fp32.

    ``auto`` is bf16 on CUDA and fp32 on CPU (CPU bf16 autocast is slower than fp32 on most CPUs
    without AMX, and the tests must be bit-reproducible). fp16 needs CUDA (it uses a GradScaler).
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("training.precision: fp16 needs a CUDA device (loss scaling); "
                              "use bf16 or fp32 on CPU")
        return torch.float16
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    raise ConfigError(f"training.precision: unknown value {precision!r}")


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
