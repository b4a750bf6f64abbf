"""Attention gates. Only ``SpatialAttention`` is used by the reference (inside the SNR module);
ChannelAttention and CBAM are defined there but never instantiated, so they are left out."""
from __future__ import annotations

import torch
from torch import nn


class SpatialAttention(nn.Module):
    """1×H×W gate from the channel-mean and channel-max maps (§1.4.1)."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(stats))
