"""Names that become folder names: studies, ablations and verifications (their trial folders
``<training.output_dir>/<kind>s/<name>/``) and MLflow experiments (their artifact folders
``mlruns/artifacts/<name>/``). One rule for all of them, so that no name can reach outside its
folder: letters, digits and ``_ . + -``, starting with a letter or digit, no ``..``; that leaves
out path separators, absolute paths and parent references on every platform.
"""
from __future__ import annotations

import re

from remdinet.config import ConfigError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
RULE = "use letters, digits and _ . + - only, starting with a letter or digit, without '..'"


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a folder, or None when it can."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        return f"{name!r} cannot name a folder: {RULE}"
    return None


def check_name(name: str, what: str) -> str:
    """``name``, or a :class:`ConfigError` naming ``what`` (the key or flag it came from)."""
    problem = name_problem(name)
    if problem is not None:
        raise ConfigError(f"{what}: {problem}")
    return name
