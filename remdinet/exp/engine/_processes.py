"""Worker processes and stopping cleanly on SIGINT/SIGTERM.

Workers. :func:`run_processes` starts one process per worker (``python -m
remdinet.exp.engine``; the target and its arguments arrive pickled on stdin) in a session
of its own, so a terminal's Ctrl-C or a scheduler's SIGTERM reaches the workers only through the
launching process, which forwards each signal once.

Signals (:class:`remdinet.exp.stopping.StopRequest`). The first SIGINT or SIGTERM asks the worker
to stop: the running trial stops at the end of its current epoch (its checkpoint ``last.pth`` is
written first) and is marked FAIL, its MLflow run is closed KILLED, a retry is queued that resumes
from that checkpoint, and the process exits with 128 + the signal number (130, 143). A second
signal acts at once (SIGINT: KeyboardInterrupt, the trial is failed and queued for retry the same
way; SIGTERM: the process dies, and its trial is failed and retried by the heartbeat mechanism).
"""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable

from ..stopping import STOP_SIGNALS, signal_name


@dataclass
class WorkerExit:
    index: int
    pid: int
    returncode: int

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        if self.returncode == 0:
            how = "finished"
        elif self.returncode < 0:
            how = f"was killed by {signal_name(-self.returncode)}"
        elif self.returncode > 128 and self.returncode - 128 in {int(s) for s in STOP_SIGNALS}:
            how = f"stopped on {signal_name(self.returncode - 128)} (exit {self.returncode})"
        else:
            how = f"exited with code {self.returncode}"
        return f"worker {self.index} (pid {self.pid}) {how}"


def run_processes(target: Callable[..., int], kwargs: list[dict[str, Any]],
                  envs: list[dict[str, str]] | None = None) -> tuple[list[WorkerExit], int | None]:
    """Run ``target(**kw)`` (a module-level function returning an exit code) in one new process
    per ``kw``, with the environment variables of ``envs[i]`` added for process i (set before the
    process starts, so before torch initialises CUDA); wait for all of them. Returns their exits
    and the first stop signal this process received (forwarded to the workers still running), or
    None. The target receives stop signals once it enters a :class:`StopRequest` (see
    :func:`main`)."""
    procs = []
    for i, kw in enumerate(kwargs):
        env = {**os.environ, **(envs[i] if envs else {})}
        proc = subprocess.Popen([sys.executable, "-m", "remdinet.exp.engine"],
                                stdin=subprocess.PIPE, start_new_session=True, env=env)
        proc.stdin.write(pickle.dumps((target, kw)))
        proc.stdin.close()
        procs.append(proc)
    received: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
    try:
        codes = [proc.wait() for proc in procs]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    exits = [WorkerExit(i, proc.pid, code) for i, (proc, code) in enumerate(zip(procs, codes))]
    return exits, (received[0] if received else None)


def main() -> None:
    """Entry of a worker process: ``(target, kwargs)`` pickled on stdin by :func:`run_processes`.

    SIGINT and SIGTERM are blocked until the target enters a :class:`StopRequest`: a stop sent
    while the worker is still importing is then honoured like any other, not fatal."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    target, kwargs = pickle.load(sys.stdin.buffer)
    sys.exit(target(**kwargs))

