"""Probe images: fixed inputs the doctor feeds to copies of the model.

The training batches show what the slice's data does; the probes add inputs chosen to reach the
model's data-dependent decisions from both sides (grey vs vivid colour, dark vs all-bright), as the
reference's batch-scalar ``if``s and piecewise losses only reveal themselves on such inputs:

* ``low_light``: validation images (the model's domain) with their targets;
* ``well_exposed``: the targets themselves as inputs (bright, natural colour);
* ``grey``: the low-light inputs and targets reduced to their luma;
* ``bright``: ``0.5 + 0.5 * target``, every pixel of every channel >= 0.5 (a normalised image
  whose minimum is > -0.1, which the reference's decoder mistakes for an un-normalised one);
* ``colour_bars``: six saturated hue bars (HSV saturation 0.8, value 0.6), input = target.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from remdinet.colour import denormalize, luma, normalize

# RGB corners of the six primary/secondary hues; a bar at HSV (hue, s, v) is v * (1 - s * (1 - c)).
_HUES = ((1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 1, 1), (0, 0, 1), (1, 0, 1))
BAR_SATURATION = 0.8
BAR_VALUE = 0.6


@dataclass
class Probe:
    name: str
    x: torch.Tensor  # ImageNet-normalised B×3×H×W
    target: torch.Tensor | None  # [0, 1] B×3×H×W


def colour_bars(h: int, w: int, vertical: bool = True) -> torch.Tensor:
    """3×H×W image of six hue bars."""
    corners = torch.tensor(_HUES, dtype=torch.float32)
    colours = BAR_VALUE * (1.0 - BAR_SATURATION * (1.0 - corners))  # 6×3
    n = w if vertical else h
    index = (torch.arange(n) * len(_HUES) // n).clamp(max=len(_HUES) - 1)
    line = colours[index].t()  # 3×n
    grid = line[:, None, :] if vertical else line[:, :, None]
    return grid.expand(3, h, w).clone()


def _grey(x01: torch.Tensor) -> torch.Tensor:
    return luma(x01).expand(-1, 3, -1, -1).contiguous()


def _resize(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if t.shape[-2:] == size:
        return t
    return F.interpolate(t[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def build_probes(dataset, count: int = 2) -> list[Probe]:
    """The probe batches (``count`` images each) from the first images of ``dataset`` (the
    validation set); every image is resized to the first one's size."""
    if len(dataset) == 0:
        raise ValueError("doctor: the validation set is empty; the probes need at least one image")
    items = [dataset[i] for i in range(min(count, len(dataset)))]
    size = tuple(items[0]["input"].shape[-2:])
    x01 = torch.stack([_resize(denormalize(it["input"][None])[0], size) for it in items])
    paired = all(it["target"] is not None for it in items)
    target = torch.stack([_resize(it["target"], size) for it in items]) if paired else None
    h, w = size
    bars = torch.stack([colour_bars(h, w, vertical=i % 2 == 0) for i in range(len(items))])
    reference = target if target is not None else x01
    bright = 0.5 + 0.5 * reference
    probes = [Probe("low_light", normalize(x01), target)]
    if target is not None:
        probes.append(Probe("well_exposed", normalize(target), target))
    probes += [Probe("grey", normalize(_grey(x01)), None if target is None else _grey(target)),
               Probe("bright", normalize(bright), bright),
               Probe("colour_bars", normalize(bars), bars)]
    return probes


def mixed_batch(probes: list[Probe]) -> Probe:
    """One image of every probe kind in a single batch (the batch-dependence probe)."""
    x = torch.cat([p.x[:1] for p in probes])
    paired = all(p.target is not None for p in probes)
    target = torch.cat([p.target[:1] for p in probes]) if paired else None
    return Probe("mixed", x, target)
