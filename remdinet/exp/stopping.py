"""Stopping cleanly on SIGINT/SIGTERM: at the end of the current epoch, after its checkpoint.

The first SIGINT or SIGTERM inside a :class:`StopRequest` only records the request;
:class:`StopAtEpochEnd` turns it into :class:`Interrupted` once the trainer has written the epoch's
``last.pth``, so the run can be closed KILLED and resumed from there. The command line exits with
128 + the signal number (130, 143). A second signal acts at once (SIGINT: KeyboardInterrupt;
SIGTERM: the process dies, and the next command that opens the tracking store closes its run,
:mod:`.owner`).

Used by ``remdi-exp train`` and ``doctor`` (:mod:`.runs`, :mod:`.doctor`) and by the engine's
workers (:mod:`.engine`).
"""
from __future__ import annotations

import signal
import threading
from typing import Any

from remdinet.train import Callback

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop asked for by SIGINT/SIGTERM; ``signum`` is the signal."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def interrupt_reason(exc: KeyboardInterrupt) -> str:
    """The ``fail_reason`` of a run or trial that a stop (or Ctrl-C) ended."""
    return f"interrupted: {str(exc) or type(exc).__name__}"


class StopRequest:
    """Within ``with``: the first SIGINT/SIGTERM sets :attr:`signum` (honoured at the next epoch
    boundary or between trials); the handler then steps aside, so a second signal acts at once.
    Outside the main thread signals cannot be caught: nothing is installed there.

    A StopRequest entered while another one is active in this process *is* that one (``with``
    returns it): a doctor run inside a worker's trial, say, sees the worker's signal, and only the
    outermost one installs and restores handlers."""

    _active: "StopRequest | None" = None

    def __init__(self) -> None:
        self.signum: int | None = None
        self._event = threading.Event()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        if StopRequest._active is not None:
            return StopRequest._active
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
            # a worker process holds stop signals back while it starts (main); they arrive now
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            StopRequest._active = self
        return self

    def __exit__(self, *exc: Any) -> None:
        if StopRequest._active is self:
            StopRequest._active = None
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        self._event.set()
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT
                      else signal.SIG_DFL)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``; a stop request ends the sleep."""
        self._event.wait(seconds)


class StopAtEpochEnd(Callback):
    """Raises :class:`Interrupted` at the end of the epoch in which a stop was requested (after the
    trainer wrote that epoch's checkpoints)."""

    def __init__(self, stop: StopRequest):
        self.stop = stop

    def on_epoch_end(self, trainer: Any, epoch: int, stage: int, metrics: dict[str, float]) -> None:
        if self.stop.signum is not None:
            raise Interrupted(self.stop.signum, f"stopped by {signal_name(self.stop.signum)} at "
                                                f"the end of epoch {epoch}")
