"""Processes named ``host:pid``: only this host's are ever found gone."""
from __future__ import annotations

import os
import socket
import subprocess

from remdinet.processes import is_gone, process_label


def ended_pid() -> int:
    """The pid of a process that has ended and been reaped (a zombie would still exist)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_an_ended_process_of_this_host_is_gone_and_a_live_one_is_not():
    assert is_gone(f"{socket.gethostname()}:{ended_pid()}")
    assert not is_gone(process_label())
    assert process_label() == f"{socket.gethostname()}:{os.getpid()}"


def test_a_process_of_another_host_is_never_gone():
    assert not is_gone(f"elsewhere-{socket.gethostname()}:{ended_pid()}")
