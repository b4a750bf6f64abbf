"""Worker plumbing: the shared trial queue, stop requests on signals, worker processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import optuna
import pytest

from remdinet.exp.study import open_storage
from remdinet.exp.workers import (Interrupted, StopAtEpochEnd, StopRequest, TrialQueue, WorkerExit,
                                  run_processes)


def test_queue_entries_are_claimed_once_each_by_racing_claimers(storage_url):
    storage = open_storage(storage_url)
    TrialQueue(storage, "s").add(12, "test")
    wins: list[str] = []
    lock = threading.Lock()

    def claimer(name):
        queue = TrialQueue(open_storage(storage_url), "s")
        while queue.claim(name):
            with lock:
                wins.append(name)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 12
    queue = TrialQueue(storage, "s")
    assert queue.pending() == 0
    assert not queue.claim("late")


def test_queue_lives_in_a_helper_study_of_its_own(storage_url):
    storage = open_storage(storage_url)
    queue = TrialQueue(storage, "s")
    queue.add(2, "test")
    assert TrialQueue(storage, "s").study_id == queue.study_id  # reopened, not recreated
    assert optuna.get_all_study_names(storage) == ["s#queue"]
    assert queue.pending() == 2


def test_first_signal_is_a_request_and_the_second_acts_at_once():
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
