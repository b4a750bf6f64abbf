import pytest
import torch

from diag_helpers import tiny_model
from remdinet.diagnostics.blocks import BLOCKS, GradProbe, param_counts, present_blocks
from remdinet.fixes import FixSet

pytestmark = pytest.mark.usefixtures("one_thread")


def test_grad_probe_reports_per_block_norms_and_none_for_a_constant():
    model = tiny_model(FixSet.corrected())
    out = model(torch.rand(2, 3, 64, 64))
    probe = GradProbe(model)
    norms = probe.norms(out["enhanced"].mean())
    assert set(norms) == set(BLOCKS)
    assert all(v > 0 for v in norms.values())
    only_head = probe.norms(model.colour_head.weight.pow(2).sum())
    assert only_head["colour_head"] > 0
    assert all(v == 0.0 for k, v in only_head.items() if k != "colour_head")
    assert probe.norms(torch.tensor(0.5)) is None


def test_param_counts_see_the_frozen_backbone_layers():
    model = tiny_model(FixSet.all_on())
    counts = param_counts(model)
    assert set(counts) == set(present_blocks(model))
    trainable, total = counts["semantic"]
    assert 0 < trainable < total
    assert counts["colour_head"] == (12, 12)
