"""SNR analysis: the SNR-aware distraction module and the learnable SNR estimator (§1.4.9, §1.4.10).

Widths scale with ``hidden`` (64 in the reference): the distraction module uses hidden/4, hidden/2
and hidden channels; the learnable estimator uses hidden/4, hidden/2 and hidden/8 (16/32/8).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..colour import luma
from .attention import SpatialAttention


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


class SNRAwareDistractionModule(nn.Module):
    """Returns ``(distraction_mask, snr_map, content_map)``, each B×1×H×W.

    ``tiny_mode`` replaces the 3×3 average-pool denoiser of the handcrafted SNR with a learnable 5×5
    depthwise box filter; it is only used when no learned SNR map is passed in.
    """

    def __init__(self, hidden: int = 64, tiny_mode: bool = False) -> None:
        super().__init__()
        q, h = max(hidden // 4, 1), max(hidden // 2, 1)
        self.encoder = nn.Sequential(
            _conv(3, q), nn.BatchNorm2d(q), nn.ReLU(inplace=True),
            _conv(q, h), nn.BatchNorm2d(h), nn.ReLU(inplace=True),
            _conv(h, hidden), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True))
        self.content_branch = nn.Sequential(_conv(hidden, h), nn.ReLU(inplace=True),
                                            _conv(h, q), nn.ReLU(inplace=True))
        self.spatial_attention = SpatialAttention(7)
        self.content_output = nn.Sequential(_conv(q, 1, 1), nn.Sigmoid())
        self.fusion_net = nn.Sequential(_conv(hidden + 2, h), nn.ReLU(inplace=True),
                                        _conv(h, q), nn.ReLU(inplace=True),
                                        _conv(q, 1, 1), nn.Sigmoid())
        self.blur = None
        if tiny_mode:
            self.blur = nn.Conv2d(3, 3, 5, padding=2, groups=3, bias=False)
            nn.init.constant_(self.blur.weight, 1.0 / 25.0)

    def handcrafted_snr(self, x: torch.Tensor) -> torch.Tensor:
        # count_include_pad=True darkens the border, as in the reference.
        d = self.blur(x) if self.blur is not None else F.avg_pool2d(x, 3, 1, 1, count_include_pad=True)
        gd = luma(d)
        noise = (luma(x) - gd).abs().clamp_min(1e-3)
        return torch.sigmoid((gd / (noise + 1e-8)).clamp(0.0, 50.0) - 1.0)

    def forward(self, x: torch.Tensor, learned: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = self.encoder(x)
        snr_map = self.handcrafted_snr(x) if learned is None else learned
        c = self.content_branch(feats)
        c = c * self.spatial_attention(c)
        content_map = self.content_output(c)
        # fusion_net(cat(feats, snr_map, content_map)) with its first conv split by input channels:
        # concatenating the wide feature map with the two maps would copy it (a full-resolution
        # channel interleave in channels_last); two convolutions summed give the same result.
        first = self.fusion_net[0]
        n = feats.shape[1]
        h = (F.conv2d(feats, first.weight[:, :n], first.bias, padding=first.padding)
             + F.conv2d(torch.cat([snr_map, content_map], dim=1), first.weight[:, n:],
                        padding=first.padding))
        distraction = self.fusion_net[1:](h)
        return distraction, snr_map, content_map


class LearnableSNREstimator(nn.Module):
    """Small encoder–decoder from the (detached) [0, 1] image to an SNR map in (0, 1)."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        a, b, c = max(hidden // 4, 1), max(hidden // 2, 1), max(hidden // 8, 1)
        self.net = nn.Sequential(
            _conv(3, a), nn.ReLU(inplace=True), _conv(a, a), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            _conv(a, b), nn.ReLU(inplace=True), _conv(b, b), nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            _conv(b, c), nn.ReLU(inplace=True), _conv(c, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
