"""Helpers of the diagnostics tests: the tiny preset under a fix set, a small fake image set."""
from __future__ import annotations

from typing import Any

import torch

from remdinet.colour import normalize
from remdinet.config import Config
from remdinet.diagnostics.checks import CHECKS, report
from remdinet.diagnostics.observer import Observer
from remdinet.diagnostics.report import Finding
from remdinet.exp.presets import load_preset
from remdinet.fixes import FixSet
from remdinet.model import build_model
from remdinet.resolve import resolve


def tiny_overrides(fixset: FixSet) -> dict[str, Any]:
    return {**load_preset("tiny"), **fixset.to_overrides(), "training.device": "cpu"}


def tiny_cfg(fixset: FixSet) -> Config:
    return resolve(tiny_overrides(fixset))


def checked(observer: Observer, fixset: FixSet) -> list[Finding]:
    """The findings of the registered checks that read ``observer``, in the report's order."""
    cfg = tiny_cfg(fixset)
    return report([c(observer, cfg) for c in CHECKS if c.observer is type(observer)])


def tiny_model(fixset: FixSet) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(tiny_cfg(fixset))


def fake_dataset(n: int = 2, size: int = 64) -> list[dict]:
    """Dark, noisy, colour-cast inputs with smooth colourful targets (like the synthetic set)."""
    g = torch.Generator().manual_seed(7)
    items = []
    for i in range(n):
        yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size),
                                indexing="ij")
        target = torch.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.8 - 0.6 * xx * yy]).clamp(0, 1)
        dark = (0.15 * target ** 1.5 + 0.02 * torch.randn(3, size, size, generator=g)).clamp(0, 1)
        items.append({"input": normalize(dark[None])[0], "target": target, "name": f"img{i}"})
    return items
