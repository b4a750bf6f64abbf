import json

import pytest

from remdinet.diagnostics.report import DoctorReport, Finding


def _report(*findings):
    return DoctorReport("all-on", list(findings), {"seconds": 1.0})


def test_report_without_flags_exits_zero_and_tags_nothing():
    report = _report(Finding("lr", "mask", "1e-4", "ok"), Finding("dead_term", "s3:x", "w", "note"))
    assert report.exit_code == 0
    assert report.summary() == {"doctor.flags": "0", "doctor.flagged": "-"}
    assert "nothing flagged" in report.table()


def test_report_with_flags_exits_one_and_lists_distinct_switches_in_order():
    report = _report(Finding("lr", "mask", "v", "flag", "collapsed", "mask_unfreeze"),
                     Finding("clamp", "w", "v", "flag", "pinned", "enhancer_identity_clamp"),
                     Finding("lr", "other", "v", "flag", "changed", "mask_unfreeze"),
                     Finding("branch", "b", "v", "flag", "flip", None))
    assert report.exit_code == 1
    assert report.flagged_switches() == ["mask_unfreeze", "enhancer_identity_clamp", "none"]
    assert report.summary()["doctor.flags"] == "4"


def test_compact_table_sums_up_ok_rows_per_check_and_full_table_lists_them():
    report = _report(Finding("lr", "curve", "v1", "ok"), Finding("lr", "mask", "v2", "flag", "d",
                                                                 "mask_unfreeze"),
                     Finding("clamp", "w", "v3", "ok"))
    compact, full = report.table(), report.table(full=True)
    assert "the other 1" in compact and "all 1" in compact and "curve" not in compact
    assert "curve" in full and "v3" in full
    header = compact.splitlines()[0]
    assert [c.strip() for c in header.split("|")] == ["check", "subject", "value", "flag",
                                                      "addressed by"]


def test_report_dict_is_json_serialisable_with_every_finding():
    report = _report(Finding("lr", "mask", "v", "flag", "d", "mask_unfreeze", "mask_unfreeze.unfreeze",
                             {"min": 1e-13}))
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["flags"] == 1 and doc["exit_code"] == 1
    assert doc["findings"][0]["switch"] == "mask_unfreeze.unfreeze"
    assert doc["findings"][0]["data"] == {"min": 1e-13}


def test_unknown_severity_is_rejected():
    with pytest.raises(ValueError, match="severity"):
        Finding("lr", "mask", "v", "bad")
