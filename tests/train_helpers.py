"""Shared set-up of the trainer, checkpoint and evaluation tests.

``train_config`` is the tiny model of ``tiny_setup.tiny_config`` on 48-px crops of a tiny embedded
synthetic set, with 6 epochs split 2/2/2 over the three stages, one-epoch stage transitions and the
mask unfreeze at the second stage-2 epoch (epoch 3). Validation runs on epochs 0, 2, 4 and 5. An epoch
trains on 3 of the 5 batches of 2 images (``training.max_train_batches``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tiny_setup import tiny_config
from remdinet.config import Config
from remdinet.data import DataBundle, build_data

STAGES = [1, 1, 2, 2, 3, 3]
UNFREEZE_EPOCH = 3  # stage 2 starts at epoch 2; optim.mask_unfreeze_epoch = 1
VALIDATION_EPOCHS = [0, 2, 4, 5]
TIMING_KEYS = ("epoch_seconds", "images_per_second")


def train_config(synthetic_dir: Path, overrides: dict[str, Any] | None = None) -> Config:
    return tiny_config({
        "synthetic.size": 64, "synthetic.crops_per_image": 2, "synthetic.cache_dir": str(synthetic_dir),
        "training.image_size": 48, "training.num_epochs": 6,
        "training.stage1_frac": 1 / 3, "training.stage3_frac": 1 / 3,
        "training.stage2_mix_epochs": 1, "training.stage3_mix_epochs": 1,
        "training.val_every": 2, "training.val_dense_epochs": 0, "training.checkpoint_every": 2,
        "training.max_train_batches": 3, "optim.mask_unfreeze_epoch": 1,
        **(overrides or {}),
    })


def quiet_data(cfg: Config) -> DataBundle:
    return build_data(cfg)


def without_timing(history: list[dict]) -> list[dict]:
    """Per-epoch metrics without the wall-clock entries (which differ between identical runs)."""
    return [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in history]


class Stop(Exception):
    """Raised by a test callback to interrupt training."""


class StopAfter:
    """Callback that raises :class:`Stop` at the end of ``epoch``."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, stage, metrics):
        if epoch == self.epoch:
            raise Stop(epoch)
