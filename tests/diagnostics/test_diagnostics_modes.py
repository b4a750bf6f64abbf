import pytest
import torch

from diag_helpers import checked, fake_dataset, tiny_model
from remdinet.diagnostics.modes import ModeMonitor, probe_copy, set_mode
from remdinet.diagnostics.probes import build_probes
from remdinet.fixes import FixSet

pytestmark = pytest.mark.usefixtures("one_thread")


def _modes(fixset):
    monitor = ModeMonitor()
    model = probe_copy(tiny_model(fixset))
    monitor.on_slice_probe(model, build_probes(fake_dataset(2)))
    return {f.subject: f for f in checked(monitor, fixset)}


def test_corrected_model_computes_the_same_in_train_pass_and_eval():
    found = _modes(FixSet.corrected())
    assert not any(f.flagged for f in found.values())
    assert found["enhanced"].data["max_difference"] == 0.0


def test_mask_squared_only_in_eval_is_pinned_to_the_mask_predictor():
    found = _modes(FixSet.all_on())
    assert found["mask_predictor"].flagged
    assert found["mask_predictor"].addressed_by == "single_mask_square"
    assert not found["colour_head"].flagged


def test_training_only_grayworld_is_pinned_to_the_colour_head():
    found = _modes(FixSet.corrected().without("differentiable_model"))
    assert found["colour_head"].flagged
    assert found["colour_head"].addressed_by == "differentiable_model"
    assert not found["mask_predictor"].flagged


def test_probe_copy_leaves_the_model_untouched():
    model = tiny_model(FixSet.all_on())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = model.mask_predictor.forward_calls
    copy = set_mode(probe_copy(model), True)
    copy(torch.rand(2, 3, 64, 64))
    assert model.mask_predictor.forward_calls == calls
    assert model.mask_predictor.dither_std > 0 and copy.mask_predictor.dither_std == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
