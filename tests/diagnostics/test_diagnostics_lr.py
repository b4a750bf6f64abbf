from types import SimpleNamespace

from remdinet.diagnostics.lr import LR_COLLAPSE, LRMonitor
from remdinet.fixes import FixSet


def _trainer(**lrs):
    return SimpleNamespace(optimizer=SimpleNamespace(
        param_groups=[{"name": n, "lr": v} for n, v in lrs.items()]))


def _by_subject(findings):
    return {f.subject: f for f in findings}


def test_lr_changed_between_batches_of_one_epoch_is_flagged_for_the_mask_fix():
    monitor = LRMonitor(FixSet.all_on().without("mask_unfreeze"))
    for epoch, batch, mask in [(0, 0, 1e-4), (0, 1, 1e-4), (1, 0, 1e-5), (1, 1, 1e-6), (1, 2, 1e-7)]:
        monitor.on_train_batch(_trainer(curve=1e-4, mask=mask), epoch, batch)
    found = _by_subject(monitor.findings())
    assert found["mask"].flagged and found["mask"].addressed_by == "mask_unfreeze"
    assert len(found["mask"].data["changes_within_epoch"]) == 2
    assert found["mask"].data["min"] == 1e-7
    assert not found["curve"].flagged


def test_lr_changing_only_between_epochs_is_ok():
    monitor = LRMonitor(FixSet.all_on())
    for epoch, lr in enumerate([1e-4, 5e-5, 2e-5]):
        for batch in range(3):
            monitor.on_train_batch(_trainer(mask=lr), epoch, batch)
    (finding,) = monitor.findings()
    assert finding.severity == "ok" and finding.data["max"] == 1e-4


def test_collapsed_lr_is_flagged_even_without_in_epoch_changes():
    monitor = LRMonitor(FixSet.all_on())
    monitor.on_train_batch(_trainer(mask=1e-4), 0, 0)
    monitor.on_train_batch(_trainer(mask=LR_COLLAPSE / 10), 1, 0)
    (finding,) = monitor.findings()
    assert finding.flagged and "collapsed" in finding.detail
    assert finding.addressed_by is None  # the fix is on: nothing in the registry covers it
