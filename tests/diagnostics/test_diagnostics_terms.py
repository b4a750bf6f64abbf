from types import SimpleNamespace

import pytest
import torch

from diag_helpers import checked, fake_dataset, tiny_cfg, tiny_model
from remdinet.diagnostics.gradients import TermMonitor
from remdinet.diagnostics.modes import probe_copy, set_mode
from remdinet.diagnostics.probes import build_probes
from remdinet.fixes import FixSet
from remdinet.losses import build_stage_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def _terms(fixset, stage=2, kinds=("low_light", "colour_bars")):
    cfg = tiny_cfg(fixset)
    model = set_mode(probe_copy(tiny_model(fixset)), True)
    trainer = SimpleNamespace(device=torch.device("cpu"), cfg=cfg, fixes=fixset,
                              criteria={stage: build_stage_loss(stage, cfg, fixset, model)})
    monitor = TermMonitor()
    probes = [p for p in build_probes(fake_dataset(2)) if p.name in kinds]
    monitor.on_stage_probe(trainer, stage, model, [(p, model(p.x)) for p in probes])
    return {(f.check, f.subject): f for f in checked(monitor, fixset)}


def test_piecewise_diversity_loss_has_no_gradient_path_on_colourful_inputs():
    found = _terms(FixSet.corrected().without("color_diversity_loss"))
    diversity = found[("gradient_reach", "s2:color_diversity")]
    assert diversity.flagged and diversity.addressed_by == "color_diversity_loss"
    assert "probe colour_bars" in diversity.data["no_path"]


def test_every_term_of_the_corrected_stage_2_loss_reaches_the_model():
    found = _terms(FixSet.corrected())
    reach = {k[1]: f for k, f in found.items() if k[0] == "gradient_reach"}
    assert {"s2:reconstruction", "s2:ssim", "s2:color_diversity", "s2:affine_decay"} <= set(reach)
    assert not any(f.flagged for f in found.values())
    assert reach["s2:reconstruction"].data["max_norm"] > 0
    # the curve penalty sits below its threshold: a satisfied hinge, not a defect
    assert reach["s2:curve_penalty"].severity == "note"


def test_reference_affine_decay_is_a_dead_term_addressed_by_its_correction():
    found = _terms(FixSet.all_on(), stage=3, kinds=("low_light",))
    dead = found[("dead_term", "s3:affine_decay")]
    assert dead.flagged and dead.addressed_by == "affine_decay"
    assert found[("dead_term", "s3:perceptual")].addressed_by == "perceptual_loss"


def test_missing_perceptual_weights_under_its_correction_are_a_note_not_a_flag():
    found = _terms(FixSet.corrected(), stage=3, kinds=("low_light",))
    assert found[("dead_term", "s3:perceptual")].severity == "note"
