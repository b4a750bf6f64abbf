"""The tiny, fast configuration every test builds on.

``tiny_config(overrides)`` is a resolved :class:`Config` with tiny model widths (well under 100k
parameters), 64-px images, batch 2, CPU. Import it with ``from tiny_setup import tiny_config``
(a module name of its own, so that no sub-directory ``conftest.py`` can shadow it) or use the
``tiny_cfg`` fixture of ``conftest.py``. ``write_tiny_study(folder, name)`` writes a one-parameter
study file on the ``tiny`` preset for the tests that run studies through the CLI.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from remdinet.config import Config
from remdinet.resolve import resolve

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


def write_tiny_study(folder: Path, name: str) -> Path:
    """``folder/NAME.toml``: random sampling, no pruner, one float parameter on the tiny preset."""
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(f"""
        [study]
        name = "{name}"
        preset = "tiny"
        sampler = "random"
        pruner = "none"
        seed = 5
        [space."color_thresholds.min_saturation"]
        type = "float"
        low = 0.05
        high = 0.2
        """))
    return path
