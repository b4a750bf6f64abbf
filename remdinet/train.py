"""Public entry point of the staged trainer (§5): ``Trainer``, ``Callback``, ``TrainResult``.

The implementation lives in :mod:`remdinet.training` (schedule, optimiser and schedulers, model
selection, device handling, the trainer itself).
"""
from __future__ import annotations

from .training.callbacks import Callback
from .training.schedule import StageSchedule
from .training.trainer import Trainer, TrainResult

__all__ = ["Callback", "StageSchedule", "TrainResult", "Trainer"]
