import pytest
import torch

from diag_helpers import checked, tiny_model
from remdinet.diagnostics.freezing import FreezeMonitor, frozen_batchnorms
from remdinet.fixes import FixSet

pytestmark = pytest.mark.usefixtures("one_thread")


def _drift(fixset):
    model = tiny_model(fixset)
    monitor = FreezeMonitor()
    monitor.on_train_start(model)
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 64, 64))
    monitor.on_train_end(model)
    return {f.check: f for f in checked(monitor, fixset)}["frozen_bn"]


def test_frozen_backbone_batchnorms_drift_in_training_mode_in_the_reference():
    finding = _drift(FixSet.all_on())
    assert finding.flagged and finding.addressed_by == "frozen_bn_eval"
    assert finding.data["max_drift"] > 0


def test_frozen_batchnorms_kept_in_eval_do_not_drift():
    assert _drift(FixSet.corrected()).severity == "ok"


def test_only_batchnorms_whose_parameters_are_all_frozen_count():
    model = tiny_model(FixSet.all_on())
    frozen = frozen_batchnorms(model)
    assert frozen and all(name.startswith("semantic.backbone.features.") for name in frozen)
