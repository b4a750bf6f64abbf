"""``remdi-exp`` as a process of its own, for the tests that signal or kill it."""
from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

WAIT = 420  # seconds a CLI run of these tests may take on a loaded 2-core machine
# a tiny epoch is a fraction of a second: longer ones leave the test time to signal mid-training
LONG_EPOCHS = ("--set", "training.max_train_batches=16")
# Tests that start several worker processes keep a 2-core machine busy on their own, and their
# heartbeat grace periods are seconds: under `pytest -n 2 --dist loadgroup` (make test) they share
# one xdist worker, so no two of them compete for the cores.
WORKER_PROCESSES = pytest.mark.xdist_group("worker_processes")

# The suite may run with SIGINT ignored or stop signals blocked (nohup, a background shell), and
# both are inherited: the CLI starts from the dispositions that an interactive shell gives it.
BOOT = """\
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM))
from remdinet.exp.cli import main
main()
"""


def start_cli(tmp_path: Path, tracking_uri: str, *args: str) -> tuple[subprocess.Popen, Path]:
    """``remdi-exp --threads 1 --tracking-uri URI ARGS...`` in ``tmp_path``, its output in a log
    file that :func:`finish` returns."""
    log = tmp_path / f"cli-{uuid.uuid4().hex[:6]}.log"
    cmd = [sys.executable, "-c", BOOT, "--threads", "1", "--tracking-uri", tracking_uri, *args]
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    return proc, log


def finish(proc: subprocess.Popen, log: Path) -> tuple[int, str]:
    code = proc.wait(timeout=WAIT)
    return code, log.read_text(encoding="utf-8")


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, log: Path, what: str) -> None:
    """Poll ``ready`` while the CLI runs; fail with its output if it ends first or takes too long."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if ready():
            return
        assert proc.poll() is None, f"the CLI ended before {what}:\n{log.read_text()}"
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {WAIT} s:\n{log.read_text()}")


def train_past_first_epoch(tmp_path: Path, tracking_uri: str) -> tuple[subprocess.Popen, Path]:
    """``remdi-exp train --preset tiny`` with long epochs into ``tmp_path/outputs``, returned once
    its first epoch's ``last.pth`` exists (a run to signal or kill mid-training)."""
    out = tmp_path / "outputs"
    proc, log = start_cli(tmp_path, tracking_uri, "--quiet", "train", "--preset", "tiny",
                          "--set", f"training.output_dir={out}", *LONG_EPOCHS)
    wait_until(lambda: any(out.glob("train/*/checkpoints/last.pth")), proc, log,
               "first epoch's last.pth")
    return proc, log
