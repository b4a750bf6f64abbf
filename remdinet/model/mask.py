"""Blend-mask predictor (§1.4.12)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .precision import Float32Conv2d

# The reference squares the mask once training has made more than this many forward calls.
SQUARE_AFTER_CALLS = 1000
DITHER_STD = 0.03


class MaskPredictor(nn.Module):
    """m = sigmoid(net(concat(x01, guidance, sem_map))), dithered in training.

    With ``square_output`` (reference) m is squared in eval mode and, in training, once the call
    counter exceeds 1000; the counter counts every call, is checked before it is incremented and is
    a plain attribute (not in the state dict), as in the reference. The ``single_mask_square``
    correction builds it with ``square_output=False``.
    """

    def __init__(self, in_channels: int = 5, hidden: int = 32, square_output: bool = True) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True),
            Float32Conv2d(hidden, 1, 3, padding=1), nn.Sigmoid())
        self.square_output = square_output
        # An attribute (not the constant) so that diagnostics can switch the train-time noise off
        # and compare train and eval modes deterministically.
        self.dither_std = DITHER_STD
        self.forward_calls = 0

    def forward(self, x01: torch.Tensor, guidance: torch.Tensor, sem_map: torch.Tensor
                ) -> torch.Tensor:
        size = x01.shape[-2:]
        if guidance.shape[-2:] != size:
            guidance = F.interpolate(guidance, size=size, mode="bilinear", align_corners=False)
        if sem_map.shape[-2:] != size:
            sem_map = F.interpolate(sem_map, size=size, mode="bilinear", align_corners=False)
        m = self.net(torch.cat([x01, guidance, sem_map], dim=1))
        if self.training:
            m = (m + self.dither_std * torch.randn_like(m)).clamp(0.0, 1.0)
        if self.square_output and (not self.training or self.forward_calls > SQUARE_AFTER_CALLS):
            m = m * m
        self.forward_calls += 1
        return m
