"""Folders the platform writes into and deletes from.

Deleting goes through :func:`remove_inside` only: a name or a symlink that escapes its folder
must never make a clean-up delete something that lies outside the folder it was meant to tidy.
Writable folders are proven by :func:`writable_dir` before work starts, so that a read-only or
misplaced output folder is one error naming its key instead of a failure halfway through.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .config import ConfigError


class OutsideRootError(ConfigError):
    """A delete whose target does not lie inside the folder it is allowed to delete from."""


def remove_inside(path: str | Path, root: str | Path) -> None:
    """Delete the file or folder ``path`` after proving that it lies strictly inside ``root``.

    Both are resolved first, so ``..`` in a name and symlinks (the target itself or a folder on
    the way) count where they really lead."""
    path, root = Path(path), Path(root).resolve()
    real = path.resolve()
    if path.is_symlink() or real == root or not real.is_relative_to(root):
        raise OutsideRootError(f"refusing to delete {path}: it is not inside {root}")
    if real.is_dir():
        shutil.rmtree(real)
    else:
        real.unlink()


def writable_dir(path: str | Path, what: str) -> Path:
    """``path``, created when missing and proven writable by creating a file in it; otherwise a
    :class:`ConfigError` naming ``what`` (a config key, or the store the folder holds)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(f"{what}: {path} is not a writable folder "
                          f"({exc.strerror or type(exc).__name__})") from None
    return path
