"""Which process owns a run: tag ``worker`` = ``host:pid``.

Every MLflow run whose whole life one process holds (a ``train`` or ``doctor`` run, a study or
ablation trial) carries the tag from its start; an engine's parent run does not (other machines'
workers may still be at it when the process that made it ends). A RUNNING run whose owner lives on
this host and no longer exists was left open by a process that could not close it (SIGKILL, a
second SIGTERM, a crash of the interpreter): :meth:`.tracking.Tracker.close_abandoned` closes it.
"""
from __future__ import annotations

from remdinet.processes import process_label

OWNER_TAG = "worker"


def owner_tags() -> dict[str, str]:
    return {OWNER_TAG: process_label()}
