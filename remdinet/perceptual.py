"""VGG19 ``features[:16]`` (conv1_1 … relu3_3) in plain torch, for the perceptual loss term (§3.2).

Parameter names are those of torchvision's ``vgg19().state_dict()`` (``features.N.weight``/``bias``), so a
torchvision VGG19 checkpoint loads directly; its layers past index 15 and its classifier are not used.
There is no download and no random-weight fallback: the weights come from a local file or the term is off.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from .colour import normalize

# features[:16] of VGG19: (in, out) per conv, "M" = 2×2 max-pool; each conv is followed by a ReLU.
_LAYOUT = ((3, 64), (64, 64), "M", (64, 128), (128, 128), "M", (128, 256), (256, 256), (256, 256))
NUM_LAYERS = 16
_IGNORED_KEY = re.compile(r"^(classifier\..*|features\.(\d+)\.(weight|bias))$")


class VGG19Features(nn.Module):
    """Frozen VGG19 ``features[:16]``; input ImageNet-normalised, output relu3_3 (B×256×H/4×W/4)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for spec in _LAYOUT:
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(spec[0], spec[1], kernel_size=3, padding=1), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def load_vgg19_features(path: str | Path) -> VGG19Features:
    """Build :class:`VGG19Features` from a local state_dict file (``loss.perceptual_weights``).

    Accepts our own ``features[:16]`` file or a full torchvision VGG19 state_dict. Raises naming the
    file when it is missing, is not a state_dict, lacks a needed tensor, or carries foreign keys.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"loss.perceptual_weights: no such file {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"loss.perceptual_weights: {path} is not a state_dict of tensors")
    net = VGG19Features()
    wanted = set(net.state_dict())
    missing = sorted(wanted - set(state))
    if missing:
        raise KeyError(f"loss.perceptual_weights: {path} lacks {', '.join(missing)}")
    foreign = sorted(k for k in set(state) - wanted if not _beyond_layer_15(k))
    if foreign:
        raise KeyError(f"loss.perceptual_weights: {path} has keys that are not VGG19's: "
                       f"{', '.join(foreign[:8])}")
    net.load_state_dict({k: state[k] for k in wanted})
    return net


def _beyond_layer_15(key: str) -> bool:
    m = _IGNORED_KEY.match(key)
    return m is not None and (m.group(2) is None or int(m.group(2)) >= NUM_LAYERS)


def perceptual_distance(vgg: VGG19Features, pred01: torch.Tensor, target01: torch.Tensor) -> torch.Tensor:
    """``mean|VGG(pred) − VGG(target)|`` on ImageNet-normalised inputs; the target side is detached."""
    with torch.no_grad():
        target_features = vgg(normalize(target01))
    return (vgg(normalize(pred01)) - target_features).abs().mean()
