"""The model as an image-to-image function: what a saved or served model hands its users."""
from __future__ import annotations

import torch
from torch import nn

from ..colour import normalize


class ImageEnhancer(nn.Module):
    """``ImageEnhancer(model)(image)``: a B×3×H×W image in [0, 1] in, the enhanced image in
    [0, 1] out. The wrapped :class:`~.enhancer.UnifiedLowLightEnhancer` takes ImageNet-normalised
    input and returns a dict of every branch (§1.5); users of a logged model want the picture."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(normalize(image))["enhanced"].clamp(0.0, 1.0)
