"""Block-level error reporting.

The reference wraps each block in a ``try/except`` that silently substitutes zeros or the input (§1.7).
Here an exception inside a block propagates, re-raised as :class:`BlockError` naming the block, so a
broken branch stops the run instead of quietly training a different model.
"""
from __future__ import annotations

from typing import Any, Callable

import torch


class BlockError(RuntimeError):
    """A model block raised; the message starts with the block's name."""


def run_block(name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)``; re-raise any exception as ``BlockError("<name> failed: ...")``.

    Errors already attributed to an inner block keep their name. Out-of-memory errors pass through
    unchanged so that callers can recognise them by type.
    """
    try:
        return fn(*args)
    except (BlockError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as exc:
        raise BlockError(f"{name} failed: {exc}") from exc
