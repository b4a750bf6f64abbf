"""Colour helpers shared by the model, the losses, the metrics and the data code.

Definitions follow §0 of the reference: luma ``Y = 0.299 R + 0.587 G + 0.114 B``; HSV-saturation
``(max - min) / (max + 1e-8)``; chroma range ``max - min`` (no normalisation).
"""
from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA = (0.299, 0.587, 0.114)


def _stats(x: torch.Tensor, values: tuple[float, float, float]) -> torch.Tensor:
    return torch.tensor(values, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)


def normalize(x01: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB -> ImageNet-normalised (the model's input convention)."""
    return (x01 - _stats(x01, IMAGENET_MEAN)) / _stats(x01, IMAGENET_STD)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised -> [0, 1] RGB (clamped, as the reference does)."""
    return (x * _stats(x, IMAGENET_STD) + _stats(x, IMAGENET_MEAN)).clamp(0.0, 1.0)


def luma(x: torch.Tensor) -> torch.Tensor:
    """B×3×H×W -> B×1×H×W."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def chroma_range(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel max_c - min_c, B×1×H×W."""
    return x.amax(dim=1, keepdim=True) - x.amin(dim=1, keepdim=True)


def hsv_saturation(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel HSV saturation, B×1×H×W."""
    mx = x.amax(dim=1, keepdim=True)
    return (mx - x.amin(dim=1, keepdim=True)) / (mx + 1e-8)


def hue(x: torch.Tensor) -> torch.Tensor:
    """HSV hue in [0, 1) as the reference's colour loss computes it (B×1×H×W)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    mx, _ = x.max(dim=1, keepdim=True)
    d = mx - x.amin(dim=1, keepdim=True) + 1e-8
    h_r = torch.remainder((g - b) / d, 6.0)
    h_g = (b - r) / d + 2.0
    h_b = (r - g) / d + 4.0
    h = torch.where(mx == r, h_r, torch.where(mx == g, h_g, h_b))
    return h / 6.0
