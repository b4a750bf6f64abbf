"""Device, precision and seeding of a training run."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import platform
import random

import numpy as np
import torch

from ..config import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an explicit CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # no device type torch knows ("tpu9")
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"training.device: {name!r} is not auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"training.device: {name!r} requested but CUDA is not available")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``training.precision`` on ``device``; None = full fp32.

    ``auto`` is bf16 on CUDA and fp32 on CPU. Even with AMX (where bf16 autocast makes the default
    model's 256² step about 1.8x faster), CPU bf16 is no faster at the quick preset's sizes, where
    its final PSNR landed within -0.24..+0.11 dB of fp32 (benchmarks/README.md); without AMX it is
    slower than fp32. fp16 needs CUDA (it uses a GradScaler).
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


def keep_freed_memory() -> None:
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the kernel.

    By default every allocation above 32 MB is a fresh ``mmap`` and its ``munmap`` returns it, so
    each training step page-faults its large activations in again (at 512² batch 2: 1.3 M page
    faults, 2 s of kernel time per step, which made the step cost grow faster than the pixel
    count). With ``mmap`` off and trimming only above 2 GB of free heap, the pages stay mapped after
    the first step; the price is that the process keeps its peak memory. No-op off glibc.
    """
    if platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    m_trim_threshold, m_mmap_max = -1, -4
    if not (libc.mallopt(m_mmap_max, 0) and libc.mallopt(m_trim_threshold, 2**31 - 1)):
        raise RuntimeError("mallopt refused the allocator settings (M_MMAP_MAX, M_TRIM_THRESHOLD)")


def wants_cudnn_benchmark(device: torch.device, fixed_sizes: bool) -> bool:
    """Whether to let cuDNN autotune its convolutions (``torch.backends.cudnn.benchmark``).

    Autotuning times the candidate algorithms once per input shape and keeps the fastest, which pays
    off when every batch has the same shape (fixed training crops, validation squashed to the same
    size); with varying sizes each new shape would be tuned again. Not when deterministic algorithms
    are requested (``torch.use_deterministic_algorithms``): the fastest algorithm can differ from
    one run to the next. CUDA only: cuDNN is not used on CPU.
    """
    return (device.type == "cuda" and fixed_sizes
            and not torch.are_deterministic_algorithms_enabled())


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
