"""How the workers of one ``study run``, ``ablate`` or ``study verify`` invocation run: one
validated object instead of a dozen loose arguments."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from remdinet.config import ConfigError
from remdinet.data.feeding import available_cpus

HEARTBEAT_INTERVAL = 30  # seconds between a running trial's heartbeats
GRACE_PERIOD = 120  # seconds without a heartbeat before a running trial is failed and retried
# A worker process holds torch, the model, its optimizer state and the decoded data: about 600 MB
# resident for the small presets (the benchmark's peak RSS at 128 px is 615-641 MB), more for
# larger images; a floor, so that what it refuses is more than the machine can hold.
WORKER_MEMORY_MB = 600
# Past two worker processes per core each trial only waits for a CPU longer: no more throughput,
# only more memory and slower trials.
WORKERS_PER_CORE = 2


@dataclass(frozen=True)
class EngineOptions:
    """``workers``: processes on this machine (1 = this process). ``gpus``: CUDA device indices
    the workers are pinned to, round robin (empty: no pinning, the CPU or whatever the config
    says). ``join``: add no work, take what others queued. ``timeout``: seconds after which no new
    trial is started. ``threads``: torch threads per worker process (default: the CPUs shared
    out). ``quiet``: no per-epoch trainer output; ``quiet_logs``: worker processes silence the
    MLflow/Optuna loggers. ``doctor``: run the doctor slice of each trial's config first."""
    workers: int = 1
    gpus: tuple[int, ...] = field(default_factory=tuple)
    join: bool = False
    timeout: float | None = None
    heartbeat_interval: int = HEARTBEAT_INTERVAL
    grace_period: int = GRACE_PERIOD
    keep_checkpoints: bool = False
    threads: int | None = None
    quiet: bool = False
    quiet_logs: bool = False
    doctor: bool = False
    force: bool = False

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.workers}")
        if any(g < 0 for g in self.gpus) or len(set(self.gpus)) != len(self.gpus):
            raise ConfigError(f"--gpus must list distinct device indices >= 0, got "
                              f"{','.join(map(str, self.gpus))}")
        if self.heartbeat_interval < 1 or self.grace_period <= self.heartbeat_interval:
            raise ConfigError(f"--grace-period ({self.grace_period} s) must be longer than "
                              f"--heartbeat-interval ({self.heartbeat_interval} s), which must be "
                              f">= 1 s")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"--timeout must be > 0 seconds, got {self.timeout}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")


def memory_mb() -> float | None:
    """This machine's physical memory in MB; None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (AttributeError, ValueError, OSError):
        return None


def check_workers(options: EngineOptions, planned: int | None, unit: str) -> None:
    """Refuse worker counts that cannot help, before anything is created: more workers than the
    ``planned`` trials or cells (``unit``) of the invocation (None: not known beforehand, as with
    --join or a study run until its timeout), and, unless ``options.force``, more than
    :data:`WORKERS_PER_CORE` per core or more than the memory holds at :data:`WORKER_MEMORY_MB`
    each."""
    workers = options.workers
    if planned is not None and workers > planned:
        raise ConfigError(f"--workers {workers} is more than the {planned} {unit} to run: the "
                          f"extra workers would have nothing to do; give --workers {planned} or "
                          f"fewer")
    if options.force:
        return
    cores, memory = available_cpus(), memory_mb()
    need = workers * WORKER_MEMORY_MB
    if workers > WORKERS_PER_CORE * cores or (memory is not None and need > memory):
        held = f"{memory / 1000:.1f} GB of memory" if memory is not None else "unknown memory"
        raise ConfigError(f"--workers {workers}: this machine has {cores} core(s) and {held}, and "
                          f"{workers} workers need about {need / 1000:.1f} GB ({WORKER_MEMORY_MB} "
                          f"MB each); give fewer --workers, or --force to start them anyway")
