"""How the workers of one ``study run``, ``ablate`` or ``study verify`` invocation run: one
validated object instead of a dozen loose arguments."""
from __future__ import annotations

from dataclasses import dataclass, field

from remdinet.config import ConfigError

HEARTBEAT_INTERVAL = 30  # seconds between a running trial's heartbeats
GRACE_PERIOD = 120  # seconds without a heartbeat before a running trial is failed and retried


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
