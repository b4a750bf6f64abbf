"""Stopping at an epoch boundary on SIGINT/SIGTERM: the request, its nesting, the callback."""
from __future__ import annotations

import os
import signal

import pytest

from remdinet.exp.stopping import Interrupted, StopAtEpochEnd, StopRequest, interrupt_reason


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


def test_a_nested_stop_request_is_the_outer_one_so_no_signal_is_lost():
    with StopRequest() as outer:
        with StopRequest() as inner:
            os.kill(os.getpid(), signal.SIGTERM)
        assert inner is outer and outer.signum == signal.SIGTERM
        # the inner exit restored nothing: the outer request's second-signal handling still holds
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with StopRequest() as again:
        assert again is not outer and not again.requested


def test_the_reason_of_an_interrupted_run_names_the_stop():
    assert interrupt_reason(Interrupted(signal.SIGTERM, "stopped by SIGTERM at the end of epoch 2")
                            ) == "interrupted: stopped by SIGTERM at the end of epoch 2"
    assert interrupt_reason(KeyboardInterrupt()) == "interrupted: KeyboardInterrupt"
