"""Semantic branch: MobileNetV3 backbone, 19-class head and transformer decoder (§1.4.5–§1.4.8).

Left out on purpose: the reference's three multi-scale convs (computed every forward, output never
used, §1.4.6), so ``semantic_features["multi_scale"]`` is an empty list; the modules the reference
builds but never calls (IntelligentBlendingModule, ContrastRefinementBlock, TaskSpecificSaliency,
CBAM/ChannelAttention, §1.4.15); and its try/except fallbacks (zero features, uniform
probabilities, returning the input), which are replaced by :class:`BlockError`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..colour import chroma_range, luma
from ..config import ModelConfig
from .backbone import MobileNetV3Backbone
from .branches import Decisions
from .errors import run_block
from .precision import Float32Conv2d, float32_conv2d
from .transformer import RestormerBlock

NUM_CLASSES = 19


class SemanticHead(nn.Module):
    """1×1 conv → BN → ReLU6 → 3×3 conv → BN → ReLU6 → 1×1 conv to 19 logits."""

    def __init__(self, in_channels: int, hidden: int, classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerDecoder(nn.Module):
    """Deepest backbone feature → windowed transformer → 16× pixel-shuffle upsampling → luma and RGB
    residual heads; the image's own colour ratios are re-scaled to the predicted luma (§1.4.8).

    ``saturation_check`` reproduces the pre-fix low-chroma replacement (fix 4a off).
    """

    def __init__(self, in_channels: int, dim: int, blocks: int, heads: int, window: int,
                 decisions: Decisions, saturation_check: bool) -> None:
        super().__init__()
        head_hidden = max(dim // 4, 1)
        self.proj = nn.Conv2d(in_channels, dim, 1)
        self.blocks = nn.Sequential(*[RestormerBlock(dim, heads, window) for _ in range(blocks)])
        self.upsample = nn.Sequential(*[m for _ in range(4) for m in
                                        (nn.Conv2d(dim, 4 * dim, 3, padding=1), nn.PixelShuffle(2))])
        self.luminance_head = nn.Sequential(
            nn.Conv2d(dim, head_hidden, 3, padding=1), nn.ReLU(inplace=True),
            Float32Conv2d(head_hidden, 1, 3, padding=1), nn.Sigmoid())
        self.rgb_residual_head = nn.Sequential(
            nn.Conv2d(dim, head_hidden, 3, padding=1), nn.ReLU(inplace=True),
            Float32Conv2d(head_hidden, 3, 3, padding=1))
        self.decisions = decisions
        self.saturation_check = saturation_check

    def heads(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(luminance_head(u), rgb_residual_head(u))`` computed as one pair of convolutions.

        The two heads read the same full-resolution map, their most expensive layers: their first
        convs run as one conv with the stacked weights (one pass over ``u``, a wider matrix product)
        and their second convs (output layers, float32 under autocast like the modules' own
        :class:`Float32Conv2d`) as one conv with a block-diagonal weight. Same parameters, same
        result up to float rounding (tests/model/test_equivalence.py).
        """
        lum1, _, lum2, _ = self.luminance_head
        res1, _, res2 = self.rgb_residual_head
        hidden = lum1.out_channels
        h = F.relu(F.conv2d(u, torch.cat([lum1.weight, res1.weight]), torch.cat([lum1.bias, res1.bias]),
                            padding=1), inplace=True)
        w2 = torch.cat([F.pad(lum2.weight, (0, 0, 0, 0, 0, hidden)),
                        F.pad(res2.weight, (0, 0, 0, 0, hidden, 0))])
        o = float32_conv2d(h, w2, torch.cat([lum2.bias, res2.bias]), padding=1)
        return torch.sigmoid(o[:, :1]), o[:, 1:]

    def forward(self, x: torch.Tensor, feat: torch.Tensor, x01: torch.Tensor) -> torch.Tensor:
        """``x``: normalised padded image; ``feat``: stride-32 feature; ``x01``: ``x`` denormalised."""
        d = self.decisions
        # The reference guesses whether its input is normalised from the batch minimum; the
        # per-image correction knows it always is.
        img = x01 if d.per_image or d.check("decoder_denorm", x.amin() < -0.1) else x
        f = self.blocks(self.proj(feat).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        u = self.upsample(f)
        if u.shape[-2:] != img.shape[-2:]:
            u = F.interpolate(u, size=img.shape[-2:], mode="bilinear", align_corners=False)
        lum, residual = self.heads(u)
        y0 = luma(img)
        y_enh = 0.7 * lum + 0.3 * y0
        out = y_enh * img / (y0 + 1e-8) + 0.1 * residual
        if self.saturation_check:
            out = d.apply("decoder_saturation_check", d.mean(chroma_range(out)) < 0.1,
                          lambda: y_enh + 1.5 * (img - y0), out)
        return out.clamp(0.0, 1.0)


class MobileNetSemanticGuidance(nn.Module):
    """Backbone + semantic head + decoder; called with the normalised, padded image."""

    def __init__(self, cfg: ModelConfig, decisions: Decisions, frozen_bn_eval: bool,
                 saturation_check: bool) -> None:
        super().__init__()
        self.backbone = MobileNetV3Backbone(cfg.backbone_width, cfg.backbone_weights, frozen_bn_eval)
        self.head = SemanticHead(self.backbone.out_channels, cfg.semantic_hidden)
        self.decoder = TransformerDecoder(self.backbone.out_channels, cfg.decoder_dim,
                                          cfg.decoder_blocks, cfg.decoder_heads, cfg.window_size,
                                          decisions, saturation_check)

    def forward(self, x: torch.Tensor, x01: torch.Tensor) -> tuple[torch.Tensor, dict]:
        feats = run_block("semantic.backbone", self.backbone, x)
        logits = run_block("semantic.head", self.head, feats["scale_16"])
        enhanced = run_block("semantic.decoder", self.decoder, x, feats["scale_16"], x01)
        features = {"logits": logits, "probs": logits.softmax(dim=1), "backbone_features": feats,
                    "multi_scale": []}
        return enhanced, features
