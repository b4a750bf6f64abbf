"""Data: layouts, pairing, decoding, augmentation, loaders and the embedded default set.

:func:`build_data` turns ``cfg.data`` into training and validation datasets. Every file is decoded once
at build time, so every problem is known before training starts: an unreadable, truncated or corrupt
image (a JPEG whose decoder reports damaged data included), a non-image file, a broken or looping
symbolic link, a pair whose sizes differ, an image without ground truth. Without ``data.skip_bad`` they
are raised together in one :class:`DataError` naming each file; with it they are left out, counted,
logged and recorded in ``info.skipped`` (a :class:`DataInfo`). Ground-truth files that no image pairs
with are logged by name and listed in ``info.unused_gt``. Nothing is dropped silently.

Validation uses the layout's validation folder when it has one (``val_data``, LOL-v1 ``eval15``, LOL-v2
``Test``); otherwise a seeded split of the training images, computed as the reference's
``random_split`` (``int(val_split · N)`` images, ``torch.randperm`` seeded with ``split_seed`` over the
images sorted by path). ``info.split`` records the file names on each side.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .augment import REFERENCE, AugmentParams, augment_pair
from .dataset import EpochSampler, PairedDataset, Sample, collate, make_loader
from .feeding import AUTO_WORKERS, Feeding, feeding
from .info import DataCounts, DataInfo, SkippedFile, Split
from .io import (IMAGE_SUFFIXES, BadImageError, DataError, decode_raw, exif_orientation,
                 is_image_name, list_files, read_image, scan_folder)
from .layouts import LAYOUTS, Layout, SplitDirs, detect_layout, resolve_layout
from .pairing import PAIRING_MODES, pair_files, gt_for_test_protocol
from .synthetic import dataset_stats, ensure_dataset

__all__ = [
    "AUTO_WORKERS", "AugmentParams", "BadImageError", "DataBundle", "DataCounts", "DataError",
    "DataInfo", "EpochSampler", "Feeding", "IMAGE_SUFFIXES", "LAYOUTS", "Layout", "PAIRING_MODES",
    "PairedDataset", "REFERENCE", "Sample", "SkippedFile", "Split", "SplitDirs", "augment_pair",
    "build_data", "collate", "dataset_stats", "decode_raw", "detect_layout", "ensure_dataset",
    "feeding", "gt_for_test_protocol", "make_loader", "pair_files", "read_image", "resolve_layout",
]


_log = logging.getLogger(__name__)
UNUSED_GT_LOGGED = 20  # unused ground-truth files named one per log line; the rest are counted


@dataclass
class DataBundle:
    train: PairedDataset
    val: PairedDataset
    info: DataInfo


@dataclass
class ScanResult:
    samples: list[Sample]
    problems: list[tuple[str, str]]
    unused_gt: list[str]


class _Decoder:
    """Decodes each file once; keeps the arrays when caching, and remembers failures either way."""

    def __init__(self, keep: bool):
        self.keep = keep
        self.arrays: dict[Path, np.ndarray] = {}
        self.shapes: dict[Path, tuple[int, int]] = {}
        self.failures: dict[Path, str] = {}

    def shape(self, path: Path) -> tuple[int, int] | None:
        """(H, W) of the image, or None after recording why it cannot be read."""
        if path not in self.shapes and path not in self.failures:
            try:
                raw = decode_raw(path)
            except BadImageError as exc:  # collected: raised together or skipped by the caller
                self.failures[path] = exc.reason
                return None
            self.shapes[path] = raw.shape[:2]
            if self.keep:
                self.arrays[path] = raw
        return self.shapes.get(path)


def _images_of(folder: Path, problems: list[tuple[str, str]]) -> list[Path]:
    files, unusable = scan_folder(folder)  # broken links etc. are named, never dropped silently
    if not files and not unusable:
        raise DataError(f"empty folder: {folder}")
    problems += unusable
    for f in files:
        if not is_image_name(f):
            problems.append((str(f), f"not an image file (suffix {f.suffix or '<none>'!r}; "
                                     f"accepted: {', '.join(IMAGE_SUFFIXES)})"))
    return [f for f in files if is_image_name(f)]


def _orientation_hint(image: Path, gt: Path, size: tuple[int, int], gt_size: tuple[int, int]) -> str:
    """Why two transposed sizes differ when one file is a JPEG turned by its EXIF orientation."""
    if size != gt_size[::-1]:
        return ""
    turned = [(p, o) for p in (image, gt) if (o := exif_orientation(p)) >= 5]  # 5-8 swap W and H
    if len(turned) != 1:
        return ""
    path, orientation = turned[0]
    return (f" ({path.name} has EXIF orientation {orientation}, so it is turned 90 degrees as image "
            f"viewers show it; the other file's pixels are not: store both the same way up)")


def scan_split(dirs: SplitDirs, pairing: str, decoder: _Decoder) -> ScanResult:
    """Pair and decode one split's files; every file that cannot be used becomes a problem."""
    problems: list[tuple[str, str]] = []
    images = _images_of(dirs.low, problems)
    gt_files = None
    if pairing != "none":
        if dirs.gt is None:
            raise DataError(f"pairing {pairing!r} needs a ground-truth folder next to {dirs.low}")
        gt_files = _images_of(dirs.gt, problems)
    paired = pair_files(images, gt_files, pairing)
    problems += paired.problems
    samples = []
    for image, gt in paired.pairs:
        size = decoder.shape(image)
        gt_size = decoder.shape(gt) if gt is not None else None
        if image in decoder.failures:
            problems.append((str(image), decoder.failures[image]))
            continue
        if gt in decoder.failures:
            problems += [(str(gt), decoder.failures[gt]),
                         (str(image), f"its ground truth {gt} is unusable")]
            continue
        if gt is not None and size != gt_size:
            problems.append((str(image), f"size mismatch with its ground truth {gt}: "
                                         f"{size[1]}x{size[0]} vs {gt_size[1]}x{gt_size[0]}"
                                         + _orientation_hint(image, gt, size, gt_size)))
            continue
        samples.append(Sample(image.relative_to(dirs.low).as_posix(), image, gt))
    unused = [str(p) for p in paired.unused_gt] if pairing != "none" else []
    return ScanResult(samples, problems, unused)


def _seeded_split(samples: list[Sample], fraction: float, seed: int
                  ) -> tuple[list[Sample], list[Sample]]:
    n_val = int(fraction * len(samples))
    if fraction > 0 and n_val == 0:
        raise DataError(f"data.val_split={fraction} of {len(samples)} images leaves no validation "
                        f"image; add images, raise val_split, or set it to 0")
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed)).tolist()
    n_train = len(samples) - n_val
    return ([samples[i] for i in sorted(order[:n_train])],
            [samples[i] for i in sorted(order[n_train:])])


def _dedupe(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # a GT shared by several images fails once per image; report it once
    return list(dict.fromkeys(problems))


def _split(layout: Layout, train: ScanResult, val: ScanResult | None, dc
           ) -> tuple[list[Sample], list[Sample], Split]:
    """The layout's validation folder when it has one, else the seeded split of ``train``."""
    if val is not None:
        train_samples, val_samples = train.samples, val.samples
        source, where = "folder", {"val_dir": layout.val.low}
    else:
        train_samples, val_samples = _seeded_split(train.samples, dc.val_split, dc.split_seed)
        source, where = "seeded", {"fraction": dc.val_split, "seed": dc.split_seed}
    split = Split(source, [s.name for s in train_samples], [s.name for s in val_samples], **where)
    return train_samples, val_samples, split


def _log_unused(unused: list[str]) -> None:
    for path in unused[:UNUSED_GT_LOGGED]:
        _log.info(f"data: ground truth unused (no image pairs with it): {path}")
    if len(unused) > UNUSED_GT_LOGGED:
        _log.info(f"data: ... and {len(unused) - UNUSED_GT_LOGGED} more unused ground-truth files "
                  f"(all in the data info's unused_gt)")


def build_data(cfg) -> DataBundle:
    """Train and validation datasets for ``cfg`` (a resolved :class:`remdinet.config.Config`)."""
    dc = cfg.data
    if dc.root == "":
        if dc.layout not in ("auto", "remdinet"):
            raise DataError(f"data.layout={dc.layout!r} but data.root is empty (the embedded set, "
                            f"which uses the remdinet layout)")
        root = ensure_dataset(cfg.synthetic)
        layout = resolve_layout(root, "remdinet")
    else:
        root = Path(dc.root).expanduser()
        if not root.is_dir():
            raise DataError(f"data.root: {root} is not a folder")
        layout = resolve_layout(root, dc.layout)

    decoder = _Decoder(keep=dc.cache_decoded)
    train = scan_split(layout.train, dc.pairing, decoder)
    val = scan_split(layout.val, dc.pairing, decoder) if layout.val is not None else None
    problems = _dedupe(train.problems + (val.problems if val is not None else []))
    if problems and not dc.skip_bad:
        raise DataError(f"{len(problems)} unusable file(s) in {root} (set data.skip_bad to skip "
                        f"them):\n" + "\n".join(f"  {p}: {why}" for p, why in problems), problems)
    for path, why in problems:
        _log.info(f"data: skipped {path}: {why}")

    if not train.samples:
        raise DataError(f"{layout.train.low}: no usable training pairs remain")
    train_samples, val_samples, split = _split(layout, train, val, dc)
    info = DataInfo(layout=layout.name, root=root, embedded=dc.root == "", pairing=dc.pairing,
                    skip_bad=dc.skip_bad, split=split,
                    skipped=[SkippedFile(p, why) for p, why in problems],
                    unused_gt=train.unused_gt + (val.unused_gt if val is not None else []),
                    test=layout.test)

    used = {p for s in train_samples + val_samples for p in (s.input, s.target) if p is not None}
    cache = {p: a for p, a in decoder.arrays.items() if p in used} if dc.cache_decoded else None
    size, seed = cfg.training.image_size, cfg.training.seed
    train_ds = PairedDataset(train_samples, "train", size, augment=dc.augment, seed=seed,
                             cache=cache)
    val_ds = PairedDataset(val_samples, "val", size, augment=False, val_resize=dc.val_resize,
                           cache=cache)
    _log_unused(info.unused_gt)
    _log.info(f"data: {layout.name} at {root}: {len(train_samples)} train, {len(val_samples)} val "
              f"({split.source} split), pairing {dc.pairing}, {len(problems)} skipped, "
              f"{len(info.unused_gt)} ground-truth files unused")
    return DataBundle(train_ds, val_ds, info)
