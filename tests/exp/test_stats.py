"""Paired statistics: intervals and p-values equal scipy's, Holm's correction, verdicts and the
adaptive-seed stopping rule."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from remdinet.exp.stats import ONE_SEED, Paired, holm, paired, stop_reason, verdict

REF = {42: 18.0, 43: 18.4, 44: 17.9, 45: 18.2, 46: 18.1, 47: 18.3, 48: 17.8}


def shifted(deltas):
    return {s: REF[s] + d for s, d in zip(sorted(REF), deltas)}


def test_three_seeds_use_the_paired_t_test_and_its_student_interval():
    values = shifted([0.3, 0.5, 0.1])
    cmp = paired(values, REF)
    diffs = np.array([0.3, 0.5, 0.1])
    test = stats.ttest_rel([values[s] for s in (42, 43, 44)], [REF[s] for s in (42, 43, 44)])
    ci = test.confidence_interval(0.95)
    assert (cmp.n, cmp.test) == (3, "paired t")
    assert cmp.mean == pytest.approx(diffs.mean())
    assert cmp.p == pytest.approx(test.pvalue)
    assert (cmp.ci_low, cmp.ci_high) == pytest.approx((ci.low, ci.high))


@pytest.mark.parametrize("n", [6, 7])
def test_six_seeds_or_more_use_wilcoxon_signed_rank(n):
    deltas = [0.4, -0.1, 0.3, 0.2, 0.5, 0.25, 0.35][:n]
    cmp = paired(shifted(deltas), REF)
    assert cmp.test == "wilcoxon"
    diffs = np.array([shifted(deltas)[s] - REF[s] for s in sorted(REF)[:n]])
    assert cmp.p == pytest.approx(stats.wilcoxon(diffs, zero_method="zsplit").pvalue)
    half = stats.t.ppf(0.975, n - 1) * diffs.std(ddof=1) / math.sqrt(n)
    assert (cmp.ci_low, cmp.ci_high) == pytest.approx((diffs.mean() - half, diffs.mean() + half))


def test_pairs_are_formed_by_seed_and_unpaired_seeds_are_left_out():
    cmp = paired({42: 19.0, 43: 19.4, 99: 0.0}, REF)
    assert cmp.n == 2 and cmp.mean == pytest.approx(1.0)


def test_identical_results_give_a_finite_p_of_one_and_a_point_interval():
    cmp = paired(dict(REF), REF)
    assert (cmp.mean, cmp.ci_low, cmp.ci_high, cmp.p) == (0.0, 0.0, 0.0, 1.0)
    constant = paired(shifted([0.5] * 7), REF)
    assert constant.p == 0.0 and constant.width == pytest.approx(0.0)


def test_holm_adjusts_step_down_and_ignores_nan():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.02, math.nan, 0.5])
    assert out[0] == pytest.approx(0.04) and math.isnan(out[1]) and out[2] == pytest.approx(0.5)


def test_verdicts_of_a_clear_gain_a_clear_loss_a_null_and_a_noisy_case():
    gain = paired(shifted([1.0, 1.05, 0.97, 1.02, 0.99]), REF)
    assert verdict(gain, gain.p, 0.1) == "helps"
    loss = paired(shifted([-2.0, -2.1, -1.9, -2.05, -1.95]), REF)
    assert verdict(loss, loss.p, 0.1) == "hurts"
    null = paired(shifted([0.01, -0.01, 0.0, 0.005, -0.005]), REF)
    assert verdict(null, null.p, 0.1) == "no effect detected (|Δ| < 0.1 dB)"
    noisy = paired(shifted([1.5, -1.2, 0.4]), REF)
    assert verdict(noisy, noisy.p, 0.1).startswith("inconclusive at 3 seeds (95 % CI ")
    one = paired({42: 19.0}, REF)
    assert verdict(one, math.nan, 0.1) == ONE_SEED


def test_a_significant_raw_p_can_be_undone_by_holm():
    gain = paired(shifted([0.5, 0.6, 0.55]), REF)
    assert gain.p < 0.05
    assert verdict(gain, min(1.0, gain.p * 30), 0.1).startswith("inconclusive")


def test_stop_reason_says_why_a_variant_needs_no_more_seeds():
    assert stop_reason(Paired(1, 0.2, math.nan, math.nan, math.nan, "none"), 0.1) is None
    assert stop_reason(Paired(3, 0.5, 0.2, 0.8, 0.01, "paired t"), 0.1) == "interval excludes 0"
    assert stop_reason(Paired(3, 0.0, -0.04, 0.05, 0.9, "paired t"), 0.1) == \
        "interval narrower than 0.1"
    assert stop_reason(Paired(3, 0.0, -0.5, 0.6, 0.9, "paired t"), 0.1) is None
