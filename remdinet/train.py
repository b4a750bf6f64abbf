"""Public entry point of the staged trainer (§5): ``Trainer``, ``Callback``, ``TrainResult``, the
per-epoch metric names (``metric_names``), the config keys a resumed run may change
(``RUNTIME_KEYS``) and ``resolve_device``; the experiment layer imports the trainer from here only.

The implementation lives in :mod:`remdinet.training` (schedule, optimiser and schedulers, model
selection, device handling, the trainer itself).
"""
from __future__ import annotations

from .training import metric_names
from .training.callbacks import Callback
from .training.device import resolve_device
from .training.schedule import StageSchedule
from .training.trainer import RUNTIME_KEYS, Trainer, TrainResult

__all__ = ["RUNTIME_KEYS", "Callback", "StageSchedule", "TrainResult", "Trainer", "metric_names",
           "resolve_device"]
