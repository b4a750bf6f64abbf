"""Worker plumbing: worker processes, their sessions and their environments."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from remdinet.exp.engine._processes import WorkerExit, run_processes


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
