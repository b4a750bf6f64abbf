"""MobileNetV3-Large feature extractor in plain torch (§1.4.4).

``features`` has torchvision's module structure (indices 0–16, the same submodule names), so a
torchvision ``mobilenet_v3_large().state_dict()`` loads after dropping ``classifier.*``. A ``width``
multiplier (channels rounded to multiples of 8 exactly as torchvision does) gives tiny test models.
Feature modules 0–9 are frozen at construction, as in the reference.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger("remdinet.model")

# (in, kernel, expanded, out, squeeze-excite, hardswish, stride) of features 1..15
_LARGE = (
    (16, 3, 16, 16, False, False, 1),
    (16, 3, 64, 24, False, False, 2),
    (24, 3, 72, 24, False, False, 1),
    (24, 5, 72, 40, True, False, 2),
    (40, 5, 120, 40, True, False, 1),
    (40, 5, 120, 40, True, False, 1),
    (40, 3, 240, 80, False, True, 2),
    (80, 3, 200, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1),
    (80, 3, 480, 112, True, True, 1),
    (112, 3, 672, 112, True, True, 1),
    (112, 5, 672, 160, True, True, 2),
    (160, 5, 960, 160, True, True, 1),
    (160, 5, 960, 160, True, True, 1),
)
# The reference's tap names understate the true stride by 2 (scale_16 is stride 32).
TAPS = {1: "scale_1", 3: "scale_2", 6: "scale_4", 12: "scale_8", 16: "scale_16"}
FROZEN_FEATURES = 10


@functools.cache
def _note_random_init() -> None:
    # once per process: a run builds its model more than once (training, sample grid, a study's
    # every trial), and the notice says nothing new the second time
    log.warning("MobileNetV3 backbone is randomly initialised (model.backbone_weights is "
                "empty): the semantic branch carries no pretrained information")


class BackboneWeightsError(ValueError):
    """A backbone state_dict does not fit the backbone; the message names the keys."""


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round to a multiple of ``divisor`` (at least ``divisor``), never more than 10 % down."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` (same parameters) that runs in float32 under CPU autocast.

    oneDNN's bfloat16 depthwise kernels, forward and backward, are 3–6× slower than its float32
    ones (5×5 especially); elsewhere autocast decides as usual.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)


class ConvBNAct(nn.Sequential):
    """Conv (no bias) → BatchNorm(eps 1e-3, momentum 0.01) → optional activation."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.Hardswish) -> None:
        conv = DepthwiseConv2d if groups > 1 and groups == cin == cout else nn.Conv2d
        layers: list[nn.Module] = [
            conv(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=0.001, momentum=0.01)]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * nn.functional.hardsigmoid(s)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, se: bool, hs: bool,
                 stride: int) -> None:
        super().__init__()
        act = nn.Hardswish if hs else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(ConvBNAct(cin, expanded, 1, act=act))
        layers.append(ConvBNAct(expanded, expanded, kernel, stride, groups=expanded, act=act))
        if se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4)))
        layers.append(ConvBNAct(expanded, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.residual else out


class MobileNetV3Backbone(nn.Module):
    """``features`` 0–16 of MobileNetV3-Large; ``forward`` returns the five taps of :data:`TAPS`.

    ``frozen_bn_eval`` (correction) keeps the BatchNorms of the frozen modules in eval mode so their
    running statistics do not drift; the reference leaves them in train mode (§8.1.15).
    """

    def __init__(self, width: float = 1.0, weights: str = "", frozen_bn_eval: bool = False) -> None:
        super().__init__()
        def ch(c: int) -> int:
            return make_divisible(c * width)

        layers: list[nn.Module] = [ConvBNAct(3, ch(16), 3, stride=2)]
        for cin, k, exp, cout, se, hs, stride in _LARGE:
            layers.append(InvertedResidual(ch(cin), k, ch(exp), ch(cout), se, hs, stride))
        last_in = ch(_LARGE[-1][3])
        self.out_channels = 6 * last_in
        layers.append(ConvBNAct(last_in, self.out_channels, 1))
        self.features = nn.Sequential(*layers)
        self.frozen_bn_eval = frozen_bn_eval
        self._init_weights()
        if weights:
            load_backbone_weights(self, weights)
        else:
            _note_random_init()
        for p in self.features[:FROZEN_FEATURES].parameters():
            p.requires_grad_(False)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def train(self, mode: bool = True) -> "MobileNetV3Backbone":
        super().train(mode)
        if mode and self.frozen_bn_eval:
            for m in self.features[:FROZEN_FEATURES].modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        taps: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                taps[TAPS[i]] = x
        return taps


def load_backbone_weights(backbone: MobileNetV3Backbone, path: str | Path) -> None:
    """Load a torchvision-style MobileNetV3-Large state_dict (raw or under ``"state_dict"``).

    ``classifier.*`` keys are dropped; any other mismatch raises :class:`BackboneWeightsError`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights not found: {path}")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise BackboneWeightsError(f"{path}: expected a state_dict, got {type(obj).__name__}")
    state = {k: v for k, v in obj.items() if not k.startswith("classifier.")}
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
                  for k in own if k in state and state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {', '.join(mismatched)}")
    if problems:
        raise BackboneWeightsError(f"{path}: " + "; ".join(problems))
    backbone.load_state_dict(state, strict=True)
