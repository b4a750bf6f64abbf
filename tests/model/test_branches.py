"""BranchRecorder and Decisions."""
from __future__ import annotations

import pytest
import torch

from remdinet.model import BRANCH_NAMES, BranchRecorder, Decisions


def test_recorder_counts_fired_and_total_and_resets():
    rec = BranchRecorder()
    rec.hit("curve_damping", True)
    rec.hit("curve_damping", False)
    assert rec.snapshot()["curve_damping"] == {"fired": 1, "total": 2}
    assert set(rec.snapshot()) == set(BRANCH_NAMES)
    rec.reset()
    assert rec.snapshot()["curve_damping"] == {"fired": 0, "total": 0}


def test_recorder_rejects_unknown_names():
    with pytest.raises(KeyError, match="bogus"):
        BranchRecorder().hit("bogus", True)


def test_batch_mode_decides_once_for_the_batch():
    d = Decisions(False, BranchRecorder())
    x = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1)
    out = d.apply("curve_damping", d.mean(x) > 0.4, lambda: x + 1, x)
    assert torch.equal(out, x + 1)


def test_per_image_mode_decides_per_image_and_records_nothing():
    d = Decisions(True, BranchRecorder())
    x = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1)
    out = d.apply("curve_damping", d.mean(x) > 0.4, lambda: x + 1, x)
    assert torch.equal(out.flatten(), torch.tensor([0.0, 2.0]))
    assert d.branches.snapshot()["curve_damping"]["total"] == 0
