"""Paired dataset, batching and loaders.

A sample is ``{"input": ImageNet-normalised 3×S×S, "target": 3×S×S in [0, 1] or None, "name": str}``.

Randomness: the augmentation of sample ``i`` in epoch ``e`` draws from a generator seeded with
``(seed, e, i)``, and the shuffling of epoch ``e`` from one seeded with ``(seed, e)``. A batch is thus
a function of the seed and the epoch only, whatever ``num_workers`` is. The loader's sampler counts
epochs itself (each new iteration is the next epoch); ``loader.sampler.set_epoch(e)`` sets it, e.g.
on resume.

``None`` targets are batched by :func:`collate` (the default collate raised on them, §8.1.12): an
all-unpaired batch has ``target`` None; a batch mixing paired and unpaired samples is an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..colour import normalize
from .augment import REFERENCE, AugmentParams, augment_pair, resize
from .feeding import feeding
from .io import DataError, decode_raw, to_float

# first word of every seed sequence, so augmentation and shuffling streams never coincide
_AUGMENT_STREAM, _SHUFFLE_STREAM = 1, 2


@dataclass(frozen=True)
class Sample:
    name: str
    input: Path
    target: Path | None


class PairedDataset(Dataset):
    """Low-light / ground-truth pairs in ``train`` (augmented) or ``val`` (deterministic) mode.

    ``val`` squashes both images to ``image_size`` like the reference, or keeps the native size when
    ``val_resize == "none"``. ``train`` without augmentation squashes too. ``cache`` maps a path to its
    decoded native-dtype array (decode once); without it every access decodes the file.
    """

    def __init__(self, samples: list[Sample], mode: str, image_size: int, augment: bool = True,
                 seed: int = 0, val_resize: str = "squash",
                 cache: dict[Path, np.ndarray] | None = None, params: AugmentParams = REFERENCE):
        if mode not in ("train", "val"):
            raise ValueError(f"mode must be 'train' or 'val', got {mode!r}")
        if val_resize not in ("squash", "none"):
            raise ValueError(f"val_resize must be 'squash' or 'none', got {val_resize!r}")
        self.samples = list(samples)
        self.mode = mode
        self.image_size = image_size
        self.augment = augment and mode == "train"
        self.seed = seed
        self.val_resize = val_resize
        self.cache = cache
        self.params = params
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain integer indexing (the loader's sampler passes its own)."""
        self.epoch = epoch

    def names(self) -> list[str]:
        return [s.name for s in self.samples]

    def _image(self, path: Path) -> torch.Tensor:
        raw = self.cache[path] if self.cache is not None and path in self.cache else decode_raw(path)
        return torch.from_numpy(to_float(raw)).permute(2, 0, 1).contiguous()

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The decoded pair of sample ``index`` as 3×H×W tensors in [0, 1], untransformed."""
        sample = self.samples[index]
        inp = self._image(sample.input)
        target = self._image(sample.target) if sample.target is not None else None
        if target is not None and target.shape != inp.shape:
            raise DataError(f"size mismatch: {sample.input} is {tuple(inp.shape[1:])}, "
                            f"{sample.target} is {tuple(target.shape[1:])}")
        return inp, target

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        inp, target = self.load(index)
        size = (self.image_size, self.image_size)
        if self.augment:
            rng = np.random.default_rng([_AUGMENT_STREAM, self.seed, epoch, index])
            inp, target = augment_pair(inp, target, self.image_size, rng, self.params)
        elif self.mode == "train" or self.val_resize == "squash":
            inp = resize(inp, size)
            target = resize(target, size) if target is not None else None
        return {"input": normalize(inp[None])[0], "target": target,
                "name": self.samples[index].name}


def collate(batch: list[dict]) -> dict:
    """Stack samples; ``target`` is None for an all-unpaired batch."""
    names = [b["name"] for b in batch]
    shapes = {tuple(b["input"].shape) for b in batch}
    if len(shapes) > 1:
        listing = ", ".join(f"{b['name']} {tuple(b['input'].shape[1:])}" for b in batch)
        raise DataError(f"cannot batch images of different sizes ({listing}); use "
                        f"data.val_resize='squash' or batch size 1")
    missing = [b["name"] for b in batch if b["target"] is None]
    if missing and len(missing) < len(batch):
        raise DataError(f"batch mixes paired and unpaired samples; without ground truth: "
                        f"{', '.join(missing)}")
    target = None if missing else torch.stack([b["target"] for b in batch])
    return {"input": torch.stack([b["input"] for b in batch]), "target": target, "name": names}


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys; shuffles with a generator seeded by ``(seed, epoch)``."""

    def __init__(self, length: int, shuffle: bool, seed: int):
        self.length = length
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.epoch += 1
        if self.shuffle:
            order = np.random.default_rng([_SHUFFLE_STREAM, self.seed, epoch]).permutation(self.length)
        else:
            order = np.arange(self.length)
        return iter([(epoch, int(i)) for i in order])


def make_loader(dataset: PairedDataset, cfg, train: bool,
                device: torch.device | str = "cpu") -> DataLoader:
    """Seeded loader over ``dataset`` with :func:`collate`: batch size from ``cfg``, workers,
    pinned memory and persistent workers for the device the batches go to (:mod:`.feeding`)."""
    # Training drops the ragged last batch as the reference does (§5.9): a 1-image batch also breaks
    # BatchNorm in training mode. A set smaller than one batch keeps its one short batch.
    drop_last = train and len(dataset) >= cfg.training.batch_size
    feed = feeding(cfg.training.num_workers, torch.device(device).type)
    # The loader draws its workers' base seed from this generator, not from the global torch RNG:
    # persistent workers draw it once per run instead of once per epoch, which would otherwise
    # shift the model's random stream (the mask dither) with num_workers and break exact resume.
    # Nothing a worker computes uses that seed (augmentation has its own generators, above).
    return DataLoader(dataset, batch_size=cfg.training.batch_size,
                      sampler=EpochSampler(len(dataset), shuffle=train, seed=cfg.training.seed),
                      num_workers=feed.num_workers, collate_fn=collate, drop_last=drop_last,
                      pin_memory=feed.pin_memory, persistent_workers=feed.persistent_workers,
                      generator=torch.Generator().manual_seed(cfg.training.seed))
