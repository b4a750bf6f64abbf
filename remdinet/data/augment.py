"""Synchronised augmentation of a (low-light, ground-truth) pair, as the reference trains (§6.3).

Geometry is shared by the pair; photometric steps touch the input only. In order:

1. random resized crop to S×S (area scale (0.95, 1), aspect (0.95, 1.05)), with torchvision's
   fallback: after 10 failed draws a deterministic centre crop clamped to the aspect range, which is
   what every LOL-shaped (600×400) image gets (§8.1.13);
2. horizontal flip, p = 0.5;
3. rotation by U(-2°, 2°), bilinear, black fill, always;
4. input-only jitter with torchvision's functional (tensor) semantics, in this order: brightness,
   contrast, saturation U(0.75, 1.25), hue shift U(-0.05, 0.05);
5. input-only gamma ``x**g``, g ~ U(0.6, 1.6), p = 0.6;
6. input-only white-balance gains U(0.9, 1.1) per channel, p = 0.5;
7. input-only Poisson-Gaussian noise, p = 0.4: Q = 255, ``(Poisson(Qx) - Qx)/Q + N(0, s^2)``,
   s ~ U(0, 0.02);
8. ``rot90`` with k in {1, 3}, p = 0.3, shared.

ImageNet normalisation of the input happens in the dataset. Images are float tensors in [0, 1]
throughout (the reference works on 8-bit PIL images until step 5). Grey for contrast/saturation is
:func:`remdinet.colour.luma` (torchvision uses 0.2989 for red). Every random number comes from the
``numpy.random.Generator`` passed in, so a sample is a function of its seed alone; all decisions are
drawn up front (:func:`draw_plan`) with a fixed number of draws.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..colour import hsv_saturation, hue, luma


@dataclass(frozen=True)
class AugmentParams:
    crop_scale: tuple[float, float] = (0.95, 1.0)
    crop_ratio: tuple[float, float] = (0.95, 1.05)
    hflip_p: float = 0.5
    rotation_deg: float = 2.0
    brightness: tuple[float, float] = (0.75, 1.25)
    contrast: tuple[float, float] = (0.75, 1.25)
    saturation: tuple[float, float] = (0.75, 1.25)
    hue_shift: float = 0.05
    gamma_p: float = 0.6
    gamma: tuple[float, float] = (0.6, 1.6)
    wb_p: float = 0.5
    wb_gain: tuple[float, float] = (0.9, 1.1)
    noise_p: float = 0.4
    noise_sigma_max: float = 0.02
    noise_photons: float = 255.0
    rot90_p: float = 0.3


REFERENCE = AugmentParams()


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator,
                            scale: tuple[float, float], ratio: tuple[float, float]
                            ) -> tuple[int, int, int, int]:
    """(top, left, h, w) drawn as torchvision's ``RandomResizedCrop.get_params`` does."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of a C×H×W tensor to ``size`` = (H, W), aspect ignored."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[None], size=size, mode="bilinear", antialias=True,
                         align_corners=False)[0]


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate C×H×W counter-clockwise about the centre, bilinear, black outside (torchvision's sense)."""
    h, w = x.shape[-2:]
    a = math.radians(degrees)
    cos, sin = math.cos(a), math.sin(a)
    # output -> input sampling map in normalised coordinates, corrected for a non-square grid
    theta = torch.tensor([[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]], dtype=x.dtype)
    grid = F.affine_grid(theta[None], [1, x.shape[0], h, w], align_corners=False)
    return F.grid_sample(x[None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[0]


def adjust_brightness(x: torch.Tensor, factor: float) -> torch.Tensor:
    return (x * factor).clamp(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    mean = luma(x[None]).mean()
    return (factor * x + (1.0 - factor) * mean).clamp(0.0, 1.0)


def adjust_saturation(x: torch.Tensor, factor: float) -> torch.Tensor:
    grey = luma(x[None])[0]
    return (factor * x + (1.0 - factor) * grey).clamp(0.0, 1.0)


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """H, S, V maps (each 1×H×W, hue in [0, 1)) -> 3×H×W RGB."""
    h6 = h * 6.0
    sector = torch.floor(h6)
    f = h6 - sector
    sector = sector.long() % 6
    p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
    by_sector = ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))
    return torch.cat([torch.stack(c).gather(0, sector[None])[0] for c in by_sector])


def adjust_hue(x: torch.Tensor, shift: float) -> torch.Tensor:
    if shift == 0.0:
        return x  # exact identity; the HSV round trip would add float error
    batch = x[None]
    h = torch.remainder(hue(batch)[0] + shift, 1.0)
    return hsv_to_rgb(h, hsv_saturation(batch)[0], batch.amax(dim=1)).clamp(0.0, 1.0)


def poisson_gaussian(x: torch.Tensor, rng: np.random.Generator, sigma: float,
                     photons: float) -> torch.Tensor:
    """``clamp01(x + (Poisson(Qx) - Qx)/Q + N(0, sigma^2))``: zero-mean shot plus read noise."""
    arr = x.numpy().astype(np.float64)
    shot = (rng.poisson(photons * arr) - photons * arr) / photons
    read = rng.normal(0.0, sigma, size=arr.shape)
    return torch.from_numpy(np.clip(arr + shot + read, 0.0, 1.0).astype(np.float32))


@dataclass(frozen=True)
class Plan:
    """Every random decision of one augmentation, drawn before any pixel is touched."""
    box: tuple[int, int, int, int]
    hflip: bool
    angle: float
    brightness: float
    contrast: float
    saturation: float
    hue: float
    gamma: float | None
    wb_gains: tuple[float, float, float] | None
    noise_sigma: float | None
    rot90_k: int


def draw_plan(height: int, width: int, rng: np.random.Generator,
              params: AugmentParams = REFERENCE) -> Plan:
    """Draw a plan; the number of draws is fixed, so geometry does not depend on the photometric
    probabilities (a geometry-only parameter set sees the same crops, flips and rotations)."""
    box = random_resized_crop_box(height, width, rng, params.crop_scale, params.crop_ratio)
    u = rng.random(16)

    def lerp(bounds: tuple[float, float], t: float) -> float:
        return float(bounds[0] + (bounds[1] - bounds[0]) * t)

    return Plan(
        box=box,
        hflip=bool(u[0] < params.hflip_p),
        angle=lerp((-params.rotation_deg, params.rotation_deg), u[1]),
        brightness=lerp(params.brightness, u[2]),
        contrast=lerp(params.contrast, u[3]),
        saturation=lerp(params.saturation, u[4]),
        hue=lerp((-params.hue_shift, params.hue_shift), u[5]),
        gamma=lerp(params.gamma, u[7]) if u[6] < params.gamma_p else None,
        wb_gains=(tuple(lerp(params.wb_gain, t) for t in u[9:12]) if u[8] < params.wb_p
                  else None),
        noise_sigma=float(params.noise_sigma_max * u[13]) if u[12] < params.noise_p else None,
        rot90_k=0 if u[14] >= params.rot90_p else (1 if u[15] < 0.5 else 3),
    )


def augment_pair(inp: torch.Tensor, target: torch.Tensor | None, size: int,
                 rng: np.random.Generator, params: AugmentParams = REFERENCE
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Augment a 3×H×W input (and its 3×H×W target, if any) to 3×size×size, both in [0, 1]."""
    if target is not None and target.shape != inp.shape:
        raise ValueError(f"input {tuple(inp.shape)} and target {tuple(target.shape)} differ in size")
    plan = draw_plan(inp.shape[1], inp.shape[2], rng, params)
    pair = [inp] if target is None else [inp, target]

    top, left, h, w = plan.box
    pair = [resize(x[:, top:top + h, left:left + w], (size, size)) for x in pair]
    if plan.hflip:
        pair = [x.flip(-1) for x in pair]
    pair = [rotate(x, plan.angle) for x in pair]

    x = adjust_brightness(pair[0], plan.brightness)
    x = adjust_contrast(x, plan.contrast)
    x = adjust_saturation(x, plan.saturation)
    x = adjust_hue(x, plan.hue)
    if plan.gamma is not None:
        x = x.clamp(0.0, 1.0) ** plan.gamma
    if plan.wb_gains is not None:
        x = (x * torch.tensor(plan.wb_gains, dtype=x.dtype).view(3, 1, 1)).clamp(0.0, 1.0)
    if plan.noise_sigma is not None:
        x = poisson_gaussian(x, rng, plan.noise_sigma, params.noise_photons)
    pair[0] = x

    if plan.rot90_k:
        pair = [torch.rot90(x, plan.rot90_k, dims=(1, 2)) for x in pair]
    return pair[0].contiguous(), (pair[1].contiguous() if target is not None else None)
