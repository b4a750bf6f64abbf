"""Processes named ``host:pid``: who owns a run or a temporary file, and whether it still lives.

A process of another host cannot be asked, so only this host's are ever found gone: whatever
names one of them is left alone.
"""
from __future__ import annotations

import os
import socket


def process_label() -> str:
    """``host:pid`` of this process: names it in logs, Optuna trials, MLflow runs and the
    temporary files it writes."""
    return f"{socket.gethostname()}:{os.getpid()}"


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
