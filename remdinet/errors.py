"""The error of a bad configuration and its suggestion rule, below both :mod:`remdinet.config` and
:mod:`remdinet.fixes` (the config's defaults come from the fix registry, which raises it too)."""
from __future__ import annotations

import difflib


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the key."""


def did_you_mean(name: str, candidates) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``candidates`` (difflib), else ``""``: the one
    suggestion rule of every unknown key, fix, preset and study."""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
