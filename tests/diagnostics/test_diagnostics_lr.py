from types import SimpleNamespace

from diag_helpers import checked
from remdinet.diagnostics.checks._learning_rate import LR_COLLAPSE
from remdinet.diagnostics.lr import LRMonitor
from remdinet.diagnostics.observer import Step
from remdinet.fixes import FixSet


def _trainer(**lrs):
    return SimpleNamespace(optimizer=SimpleNamespace(
        param_groups=[{"name": n, "lr": v} for n, v in lrs.items()]))


def _step(epoch, index):
    return Step(epoch, index, batch={}, out={}, result=None, loss=None, grads=None)


def _by_subject(findings):
    return {f.subject: f for f in findings}


def test_lr_changed_between_batches_of_one_epoch_is_flagged_for_the_mask_fix():
    fixset = FixSet.all_on().without("mask_unfreeze")
    monitor = LRMonitor()
    for epoch, batch, mask in [(0, 0, 1e-4), (0, 1, 1e-4), (1, 0, 1e-5), (1, 1, 1e-6), (1, 2, 1e-7)]:
        monitor.on_train_batch(_trainer(curve=1e-4, mask=mask), _step(epoch, batch))
    found = _by_subject(checked(monitor, fixset))
    assert found["mask"].flagged and found["mask"].addressed_by == "mask_unfreeze"
    assert len(found["mask"].data["changes_within_epoch"]) == 2
    assert found["mask"].data["min"] == 1e-7
    assert not found["curve"].flagged


def test_lr_changing_only_between_epochs_is_ok():
    monitor = LRMonitor()
    for epoch, lr in enumerate([1e-4, 5e-5, 2e-5]):
        for batch in range(3):
            monitor.on_train_batch(_trainer(mask=lr), _step(epoch, batch))
    (finding,) = checked(monitor, FixSet.all_on())
    assert finding.severity == "ok" and finding.data["max"] == 1e-4


def test_collapsed_lr_is_flagged_even_without_in_epoch_changes():
    monitor = LRMonitor()
    monitor.on_train_batch(_trainer(mask=1e-4), _step(0, 0))
    monitor.on_train_batch(_trainer(mask=LR_COLLAPSE / 10), _step(1, 0))
    (finding,) = checked(monitor, FixSet.all_on())
    assert finding.flagged and "collapsed" in finding.detail
    assert finding.addressed_by is None  # the fix is on: nothing in the registry covers it
