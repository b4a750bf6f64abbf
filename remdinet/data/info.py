"""What :func:`remdinet.data.build_data` found, as a typed record.

The record crosses two layers: the trainer returns it in ``TrainResult.data_info`` and the
experiment layer logs it to MLflow (counts as metrics, the file lists as the run's dataset and as
JSON artifacts). Typed fields make a misspelt key an ``AttributeError`` where it is read, not a
silent ``KeyError`` far from the data code. The counts are derived from the lists so they cannot
disagree with them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .layouts import SplitDirs


@dataclass(frozen=True)
class Split:
    """The file names on each side of the train/validation split and where the split came from:
    the layout's validation folder (``val_dir``) or a seeded split (``fraction``, ``seed``)."""
    source: Literal["folder", "seeded"]
    train: list[str]
    val: list[str]
    val_dir: Path | None = None
    fraction: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class SkippedFile:
    """A file ``data.skip_bad`` left out, and why."""
    file: str
    reason: str


@dataclass(frozen=True)
class DataCounts:
    train: int
    val: int
    skipped: int
    unused_gt: int


@dataclass(frozen=True)
class DataInfo:
    layout: str  # a name in remdinet.data.LAYOUTS
    root: Path
    embedded: bool
    pairing: str
    skip_bad: bool
    split: Split
    skipped: list[SkippedFile]
    unused_gt: list[str]  # ground truth no image pairs with
    test: SplitDirs | None  # the layout's test folders, when it has them

    @property
    def counts(self) -> DataCounts:
        return DataCounts(train=len(self.split.train), val=len(self.split.val),
                          skipped=len(self.skipped), unused_gt=len(self.unused_gt))
