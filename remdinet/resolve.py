"""The config a run uses: :func:`resolve`, the one place where the fix registry meets the user's
overrides. It sits above both :mod:`remdinet.config` and :mod:`remdinet.fixes`, so neither imports
the other back."""
from __future__ import annotations

from typing import Any

from .config import Config, apply_overrides
from .fixes import FixSet


def resolve(overrides: dict[str, Any] | None = None) -> Config:
    """Build the config a run uses: defaults, then the fix set's pre-fix values, then overrides.

    ``overrides`` (flat keys) are the user's explicit choices: a preset/config file merged with
    ``--set`` items. ``fixes.*`` keys among them select the fix set first.
    """
    overrides = dict(overrides or {})
    fix_keys = {k: v for k, v in overrides.items() if k.startswith("fixes.")}
    cfg = apply_overrides(Config(), fix_keys)
    fixset = FixSet.from_config(cfg.fixes)
    cfg = apply_overrides(cfg, fixset.config_defaults())
    return apply_overrides(cfg, overrides)
