import functools

import pytest

from diag_helpers import checked, fake_dataset, tiny_model
from remdinet.diagnostics.branches import FlowMonitor
from remdinet.diagnostics.modes import probe_copy
from remdinet.diagnostics.probes import build_probes
from remdinet.fixes import FixSet

pytestmark = pytest.mark.usefixtures("one_thread")


@functools.lru_cache(maxsize=None)
def _flow(fixset):
    monitor = FlowMonitor()
    monitor.on_slice_probe(probe_copy(tiny_model(fixset)), build_probes(fake_dataset(2)))
    return {(f.check, f.subject): f for f in checked(monitor, fixset)}


def test_corrected_model_is_per_image_and_differentiable_everywhere():
    found = _flow(FixSet.corrected())
    assert not [k for k, f in found.items() if f.flagged]
    assert found[("batch_dependence", "enhanced")].data["max_difference"] < 1e-4
    assert not [k for k in found if k[0] == "branch"]  # per-image decisions record nothing


def test_batch_minimum_heuristic_flips_for_an_all_bright_image():
    found = _flow(FixSet.all_on())
    flip = found[("branch", "decoder_denorm")]
    assert flip.flagged and flip.addressed_by == "per_image_decisions"
    assert "image 3" in flip.data["flips"][0]  # the bright probe is the 4th kind


def test_flat_enhancer_clamp_cuts_the_input_gradient_on_bright_inputs():
    found = _flow(FixSet.all_on())
    cut = found[("input_gradient", "enhanced")]
    assert cut.flagged and cut.addressed_by == "enhancer_identity_clamp"
    assert "bright" in cut.data["zero"]
    assert cut.data["cut_by"] == ["color_enhancer"]


def test_curve_branch_that_never_runs_leaves_curves_without_a_gradient_path():
    found = _flow(FixSet.corrected().without("differentiable_model"))
    curves = found[("input_gradient", "curves")]
    assert curves.flagged and curves.addressed_by == "differentiable_model"
    assert curves.data["no_path"]
