"""Image-quality metrics: PSNR, SSIM and MS-SSIM as differentiable per-image tensors.

Conventions (§7 of the reference, and the ones low-light papers report):

* ``psnr``: ``10·log10(data_range² / MSE)`` with the MSE of each image over C·H·W, clamped to ≥ 1e-10.
* ``ssim``: Gaussian 11×11 window (σ = 1.5), K1 = 0.01, K2 = 0.03, population (co)variances, computed per
  channel and averaged over channels (the Retinexformer/CIDNet convention). Only the positions where the
  whole window fits inside the image are averaged ('valid' filtering), which is exactly what
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)`` averages after cropping its border.
* ``ms_ssim``: the ``pytorch_msssim`` convention the reference trains and validates with: five scales,
  weights 0.0448/0.2856/0.3001/0.2363/0.1333, ReLU on the contrast-structure terms, 2×2 average pooling
  (padding odd sides) between scales, mean over channels.

Inputs are B×C×H×W tensors in [0, 1] (C = 3 for RGB); every function returns a tensor of shape (B,).
Computation runs in float32 with autocast disabled, so a bf16/fp16 forward pass does not degrade the
statistics the SSIM loss term differentiates.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
K1, K2 = 0.01, 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# Four 2× downsamplings must leave at least one full window: the pytorch_msssim bound.
MS_SSIM_MIN_SIDE = (WINDOW_SIZE - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1)


def _check_pair(name: str, pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.dim() != 4:
        raise ValueError(f"{name}: expected B×C×H×W tensors, got shape {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"{name}: pred {tuple(pred.shape)} and target {tuple(target.shape)} "
                         f"differ in shape")


def _as_fp32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float32 else x.float()


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB, shape (B,)."""
    _check_pair("psnr", pred, target)
    with torch.autocast(device_type=pred.device.type, enabled=False):
        diff = _as_fp32(pred) - _as_fp32(target)
        mse = diff.pow(2).flatten(1).mean(dim=1).clamp_min(1e-10)
        return 10.0 * torch.log10(data_range ** 2 / mse)


def _gaussian_window(channels: int, device: torch.device) -> torch.Tensor:
    coords = torch.arange(WINDOW_SIZE, dtype=torch.float32, device=device) - WINDOW_SIZE // 2
    g = torch.exp(-coords.pow(2) / (2.0 * WINDOW_SIGMA ** 2))
    g = g / g.sum()
    return g.view(1, 1, 1, WINDOW_SIZE).repeat(channels, 1, 1, 1)


def _blur(x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian, depthwise, no padding ('valid')."""
    c = x.shape[1]
    x = F.conv2d(x, win, groups=c)
    return F.conv2d(x, win.transpose(2, 3), groups=c)


def _ssim_and_cs(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor,
                 data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure term per image and channel, each B×C."""
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    # the five local means in one blur of the stacked maps: 2 convolutions instead of 10 (this is
    # the SSIM loss term's main cost in a training step)
    c = x.shape[1]
    mu_x, mu_y, e_xx, e_yy, e_xy = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1),
                                         win.repeat(5, 1, 1, 1)).split(c, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = e_xx - mu_xx
    var_y = e_yy - mu_yy
    cov = e_xy - mu_xy
    cs_map = (2.0 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2.0 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs_map
    return ssim_map.flatten(2).mean(dim=-1), cs_map.flatten(2).mean(dim=-1)


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM (Gaussian 11×11, σ = 1.5, per channel then averaged), shape (B,).

    Raises ``ValueError`` when a side is shorter than the 11-pixel window.
    """
    _check_pair("ssim", pred, target)
    h, w = pred.shape[-2:]
    if min(h, w) < WINDOW_SIZE:
        raise ValueError(f"ssim: image {h}×{w} is smaller than the {WINDOW_SIZE}×{WINDOW_SIZE} window")
    with torch.autocast(device_type=pred.device.type, enabled=False):
        win = _gaussian_window(pred.shape[1], pred.device)
        per_channel, _ = _ssim_and_cs(_as_fp32(pred), _as_fp32(target), win, data_range)
        return per_channel.mean(dim=1)


def ms_ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image MS-SSIM (5 scales, pytorch_msssim weights), shape (B,).

    Raises ``ValueError`` when the smaller side is ≤ 160 pixels: four 2× downsamplings would leave the
    coarsest scale smaller than the 11-pixel window.
    """
    _check_pair("ms_ssim", pred, target)
    h, w = pred.shape[-2:]
    if min(h, w) <= MS_SSIM_MIN_SIDE:
        raise ValueError(f"ms_ssim: the smaller image side must be > {MS_SSIM_MIN_SIDE} pixels "
                         f"(5 scales with an {WINDOW_SIZE}-pixel window); got {h}×{w}. "
                         f"Use ssim() for smaller images.")
    with torch.autocast(device_type=pred.device.type, enabled=False):
        x, y = _as_fp32(pred), _as_fp32(target)
        win = _gaussian_window(x.shape[1], x.device)
        levels = []
        for level in range(len(MS_SSIM_WEIGHTS)):
            ssim_c, cs_c = _ssim_and_cs(x, y, win, data_range)
            if level < len(MS_SSIM_WEIGHTS) - 1:
                levels.append(torch.relu(cs_c))
                pad = (x.shape[2] % 2, x.shape[3] % 2)
                x = F.avg_pool2d(x, kernel_size=2, padding=pad)
                y = F.avg_pool2d(y, kernel_size=2, padding=pad)
        levels.append(torch.relu(ssim_c))
        weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float32, device=x.device).view(-1, 1, 1)
        per_channel = torch.prod(torch.stack(levels, dim=0) ** weights, dim=0)
        return per_channel.mean(dim=1)


__all__ = ["psnr", "ssim", "ms_ssim", "MS_SSIM_MIN_SIDE", "MS_SSIM_WEIGHTS"]
