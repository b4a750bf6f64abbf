"""The notice that a run trains one of the reference's own fix profiles, which are known to fail.

Both ``post_fix`` (the default) and ``pre_fix`` reproduce the reference as it ran, bugs that
survived the fixes included: its output drifts to a grey or near-white image. A user who meets
that failure should learn at the start that it is expected, and where the repaired model is.
"""
from __future__ import annotations

import functools
import logging

from remdinet.config import Config
from remdinet.fixes import CORRECTED, POST_FIX, PRE_FIX

_log = logging.getLogger(__name__)
KNOWN_BAD = (POST_FIX, PRE_FIX)


@functools.cache
def _announce() -> None:
    # once per process: an ablation or a study resolves many configs of these profiles
    _log.warning(f"note: the {POST_FIX} and {PRE_FIX} fix profiles reproduce the reference's "
                 f"known failure (grey / white output); --profile {CORRECTED} (fixes.profile = "
                 f"\"{CORRECTED}\") trains the repaired model, and `remdi-exp doctor` shows what "
                 f"is still broken")


def announce(*configs: Config) -> None:
    """Log the notice, once per process, when any of ``configs`` trains a known-bad profile."""
    if any(cfg.fixes.profile in KNOWN_BAD for cfg in configs):
        _announce()
