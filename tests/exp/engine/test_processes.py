"""Worker plumbing: stop requests on signals, worker processes and their environments."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from remdinet.exp.engine._processes import (Interrupted, StopAtEpochEnd, StopRequest, WorkerExit,
                                            run_processes)


def test_first_signal_is_a_request_and_the_second_acts_at_once():
    # the suite may run with SIGINT ignored (nohup, a background shell): start from the default
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _signal_twice()
    finally:
        signal.signal(signal.SIGINT, previous)


def _signal_twice():
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_stop_request_restores_the_previous_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_requested_stop_ends_training_at_the_epoch_boundary():
    with StopRequest() as stop:
        callback = StopAtEpochEnd(stop)
        callback.on_epoch_end(None, 0, 1, {})  # nothing requested: training goes on
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(Interrupted, match="stopped by SIGTERM at the end of epoch 3") as info:
            callback.on_epoch_end(None, 3, 2, {})
    assert info.value.signum == signal.SIGTERM


@pytest.mark.parametrize("code, text", [
    (0, "finished"), (-9, "was killed by SIGKILL"), (143, "stopped on SIGTERM (exit 143)"),
    (2, "exited with code 2")])
def test_worker_exit_says_how_the_worker_ended(code, text):
    assert WorkerExit(1, 77, code).describe() == f"worker 1 (pid 77) {text}"


MARKER = ("import os, sys; open(sys.argv[1], 'w').write(f'{os.getppid()} {os.getsid(0)}'); "
          "sys.exit(int(sys.argv[2]))")


def test_run_processes_runs_each_target_in_its_own_session(tmp_path):
    # the target must be importable by the worker process: subprocess.call runs a script that
    # records its parent (the worker) and its session
    kwargs = [{"args": [sys.executable, "-c", MARKER, str(tmp_path / name), code]}
              for name, code in (("a", "0"), ("b", "3"))]
    exits, received = run_processes(subprocess.call, kwargs)
    assert received is None
    assert [e.returncode for e in exits] == [0, 3]
    for e, name in zip(exits, ("a", "b")):
        parent, session = map(int, (tmp_path / name).read_text().split())
        assert parent == e.pid
        assert session == e.pid != os.getsid(0)  # a new session: signals come only via us


ENV_MARKER = ("import os, sys; open(sys.argv[1], 'w').write(os.environ.get("
              "'CUDA_VISIBLE_DEVICES', '(unset)'))")


def test_each_worker_process_starts_with_its_own_environment(tmp_path):
    kwargs = [{"args": [sys.executable, "-c", ENV_MARKER, str(tmp_path / str(i))]}
              for i in range(3)]
    envs = [{"CUDA_VISIBLE_DEVICES": d} for d in ("0", "1", "0")]
    exits, _ = run_processes(subprocess.call, kwargs, envs)
    assert all(e.ok for e in exits)
    assert [(tmp_path / str(i)).read_text() for i in range(3)] == ["0", "1", "0"]
