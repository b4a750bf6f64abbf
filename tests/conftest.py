"""Shared test helpers.

``tiny_config(overrides)`` is the stable entry point for a small, fast, resolved :class:`Config`:
tiny model widths (well under 100k parameters), 64-px images, batch 2, CPU. Import it with
``from conftest import tiny_config`` or use the ``tiny_cfg`` fixture.
"""
from __future__ import annotations

import sys
from typing import Any

import pytest
import torch

from remdinet.config import Config, resolve

TINY_MODEL: dict[str, Any] = {
    "model.backbone_width": 0.1,
    "model.snr_hidden": 8,
    "model.decoder_dim": 8,
    "model.decoder_blocks": 1,
    "model.decoder_heads": 2,
    "model.window_size": 4,
    "model.semantic_hidden": 8,
    "model.curve_hidden": 8,
    "model.mask_hidden": 8,
}

TINY_TRAINING: dict[str, Any] = {
    "training.image_size": 64,
    "training.batch_size": 2,
    "training.num_epochs": 4,
    "training.device": "cpu",
    "training.num_workers": 0,
}


def tiny_config(overrides: dict[str, Any] | None = None) -> Config:
    """Resolved config of the tiny model; ``overrides`` (flat keys, ``fixes.*`` included) win."""
    return resolve({**TINY_MODEL, **TINY_TRAINING, **(overrides or {})})


_THIS_MODULE = sys.modules[__name__]


def pytest_collectstart(collector):
    # Sub-directory conftest.py files are imported under the same module name "conftest" and would
    # shadow this one; restore it before each test module is imported so that
    # ``from conftest import tiny_config`` always means this file.
    if isinstance(collector, pytest.Module):
        sys.modules["conftest"] = _THIS_MODULE


@pytest.fixture
def tiny_cfg() -> Config:
    return tiny_config()


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Every test starts from the same RNG state; two threads keep the shared machine usable."""
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


@pytest.fixture
def one_thread():
    """End-to-end runs train many tiny models; on a shared 2-core machine one intra-op thread
    avoids oversubscription (the autouse fixture above sets two)."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(2)
