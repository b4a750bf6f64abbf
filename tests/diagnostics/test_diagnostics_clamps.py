from diag_helpers import checked
from remdinet.diagnostics.checks._clamp import CLAMP_PRESSURE
from remdinet.diagnostics.clamps import ClampMonitor
from remdinet.fixes import FixSet


def clamp_findings(report, fixset):
    monitor = ClampMonitor()
    monitor.report = report
    return checked(monitor, fixset)


def test_parameter_at_its_bound_for_most_forwards_is_flagged_and_attributed():
    findings = {f.subject: f for f in clamp_findings(
        {"color_enhancer.weight": 6 / 9, "color_enhancer.bias": 0.0,
         "color_enhancer.vibrance_factor": CLAMP_PRESSURE}, FixSet.all_on())}
    assert findings["color_enhancer.weight"].flagged
    assert findings["color_enhancer.weight"].addressed_by == "enhancer_identity_clamp"
    assert findings["color_enhancer.vibrance_factor"].flagged
    assert findings["color_enhancer.bias"].severity == "ok"


def test_clamp_pressure_below_the_threshold_is_ok():
    (finding,) = clamp_findings({"colour_head.weight": CLAMP_PRESSURE - 0.01}, FixSet.all_off())
    assert finding.severity == "ok"
