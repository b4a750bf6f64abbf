"""Where the ``remdinet`` loggers' records go when the command line runs: configured once per
process, by the CLI and by each engine worker process.

Progress (INFO) goes to stdout (stderr for ``doctor``, whose stdout may be JSON), warnings and
errors to stderr, each record as its bare message. Records go through ``tqdm.write``, so a line
printed while a progress bar is on the terminal does not tear it. ``--quiet`` silences the core
library's progress (per-epoch lines, data summaries) but not the experiment layer's (trial
results, tables), as before the loggers existed.
"""
from __future__ import annotations

import logging
import sys

from tqdm.auto import tqdm

ROOT = "remdinet"  # the core library's loggers: remdinet.training.trainer, remdinet.data, ...
EXP = "remdinet.exp"  # the experiment layer's


class ConsoleHandler(logging.Handler):
    """Writes each record to ``sys.<stream>`` as looked up at emit time (a test runner or a
    redirection may swap it after configuration), with ``prefix`` before the message."""

    def __init__(self, stream: str, prefix: str = "", level: int = logging.NOTSET):
        super().__init__(level)
        self.stream = stream
        self.prefix = prefix

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.prefix + self.format(record), file=getattr(sys, self.stream))
        except Exception:  # logging's own contract: a failing handler reports, never raises
            self.handleError(record)


def configure(quiet: bool = False, progress: str = "stdout", prefix: str = "") -> None:
    """Route the ``remdinet`` loggers to the console, replacing an earlier configuration.
    ``progress``: the stream of INFO records (``stdout`` or ``stderr``)."""
    root = logging.getLogger(ROOT)
    for handler in [h for h in root.handlers if isinstance(h, ConsoleHandler)]:
        root.removeHandler(handler)
    info = ConsoleHandler(progress, prefix)
    info.addFilter(lambda record: record.levelno < logging.WARNING)
    root.addHandler(info)
    root.addHandler(ConsoleHandler("stderr", prefix, logging.WARNING))
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    logging.getLogger(EXP).setLevel(logging.INFO)


def progress_to(stream: str) -> None:
    """Send INFO records to ``stream`` from now on (``doctor``: stderr)."""
    for handler in logging.getLogger(ROOT).handlers:
        if isinstance(handler, ConsoleHandler) and handler.level < logging.WARNING:
            handler.stream = stream
