"""Which process owns a run: tag ``worker`` = ``host:pid``.

Every MLflow run whose whole life one process holds (a ``train`` or ``doctor`` run, a study or
ablation trial) carries the tag from its start; an engine's parent run does not (other machines'
workers may still be at it when the process that made it ends). A RUNNING run whose owner lives on
this host and no longer exists was left open by a process that could not close it (SIGKILL, a
second SIGTERM, a crash of the interpreter): :meth:`.tracking.Tracker.close_abandoned` closes it.
"""
from __future__ import annotations

import os
import socket

OWNER_TAG = "worker"


def process_label() -> str:
    """``host:pid`` of this process: names it in logs, Optuna trials and MLflow runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_tags() -> dict[str, str]:
    return {OWNER_TAG: process_label()}


def is_gone(label: str) -> bool:
    """Whether ``label`` (``host:pid``) names a process of this host that no longer exists.
    A process of another host, or one that exists but is another user's, is never gone."""
    host, _, pid = label.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user's process
        pass
    return False
