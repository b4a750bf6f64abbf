"""The names of the trainer's per-epoch metrics (docs/architecture.md, "Trainer"): the keys of
``TrainResult.history`` and of ``on_epoch_end``'s ``metrics``, logged under these names. Import
them (through :mod:`remdinet.train`), so that a typo fails loudly, not as a metric that never
matches."""
from __future__ import annotations

EPOCH = "epoch"
STAGE = "stage"
MIX_FACTOR = "mix_factor"
TRAIN_LOSS = "train_loss"
TRAIN_PSNR = "train_psnr"
SKIPPED_BATCHES = "skipped_batches"
IMAGES_PER_SECOND = "images_per_second"
EPOCH_SECONDS = "epoch_seconds"
VAL_PSNR = "val_psnr"
VAL_SSIM = "val_ssim"
VAL_MS_SSIM = "val_ms_ssim"
VAL_SATURATION = "val_saturation"
VAL_SKIPPED_BATCHES = "val_skipped_batches"
VAL_ADJUSTED_PSNR = "val_adjusted_psnr"
VAL_SCORE = "val_score"


def val_metric(metric: str) -> str:
    """The validation metric of an image metric (``psnr`` -> ``val_psnr``)."""
    return f"val_{metric}"


def loss_metric(term: str) -> str:
    """The epoch mean of a loss term's unweighted value (a :mod:`remdinet.losses` term name)."""
    return f"loss/{term}"


def lr_metric(group: str) -> str:
    """The LR an optimiser group ended the epoch's training with."""
    return f"lr/{group}"
