"""Layers that keep full precision under autocast.

Under bf16 autocast every convolution runs in bf16 (8-bit mantissa). For the layers whose outputs
are image values, that rounding loses the small per-channel differences the model's colour depends
on: the colour enhancer's flat clamp mixes the channels to about R+G+B, so the chroma the loss sees,
and its gradient, is a small difference of large numbers. Measured on the quick preset: bf16
everywhere ended 0.2-0.5 dB below fp32 (seeds 42-44) with a greyer output (val saturation 0.17 vs
0.25); with the output layers in fp32 (these, and the colour heads) saturation matched fp32 and the
final PSNR landed within -0.24..+0.11 dB of fp32 (mean -0.03). Without autocast these are plain
convolutions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def float32_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   padding: int | tuple[int, int] | str = 0) -> torch.Tensor:
    """``F.conv2d`` in the weight's dtype (float32 for a float32 model), with autocast off."""
    with torch.autocast(x.device.type, enabled=False):
        return F.conv2d(x.to(weight.dtype), weight, bias, padding=padding)


class Float32Conv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters) computed by :func:`float32_conv2d`: an output layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != (1, 1) or self.dilation != (1, 1) or self.groups != 1:
            raise ValueError("Float32Conv2d: only stride 1, dilation 1, groups 1 are supported")
        return float32_conv2d(x, self.weight, self.bias, self.padding)
