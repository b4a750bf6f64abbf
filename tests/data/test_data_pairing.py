from pathlib import Path

import pytest

from remdinet.data import DataError, pair_files, gt_for_test_protocol
from remdinet.data.pairing import match_flexible


def _paths(*names):
    return [Path("/low") / n for n in names]


def _gts(*names):
    return [Path("/gt") / n for n in names]


def _gt_of(result):
    return {img.name: (gt.name if gt is not None else None) for img, gt in result.pairs}


def test_strict_pairs_equal_stems_across_extensions():
    res = pair_files(_paths("1.png", "2.jpg"), _gts("1.jpg", "2.png"), "strict")
    assert _gt_of(res) == {"1.png": "1.jpg", "2.jpg": "2.png"} and not res.problems


def test_strict_reports_an_image_without_ground_truth_by_name():
    res = pair_files(_paths("1.png", "1_low.png"), _gts("1.png"), "strict")
    assert _gt_of(res) == {"1.png": "1.png"}
    assert res.problems[0][0].endswith("1_low.png") and "strict" in res.problems[0][1]


@pytest.mark.parametrize("image,gt", [
    ("a.png", "a.png"),                 # exact
    ("a_low.png", "a.png"),             # one input suffix stripped
    ("a_noisy.png", "a.png"),
    ("a_dark_low.png", "a.png"),        # stripping accumulates in list order (_low, then _dark)
    ("a_low.png", "a_high.png"),        # stripped base + GT suffix
    ("a.png", "a_gt.png"),
    ("a_input.png", "a_target.png"),
    ("12_frame.png", "12_ref.png"),     # equal leading digits
])
def test_flexible_rules_find_the_ground_truth(image, gt):
    res = pair_files(_paths(image), _gts(gt, "zzz.png"), "flexible")
    assert _gt_of(res) == {image: gt}


def test_flexible_numeric_fallback_needs_equal_leading_digits():
    # the reference's prefix match paired "1" with "10" (§8.1.14)
    res = pair_files(_paths("1_x.png"), _gts("10_ref.png"), "flexible")
    assert not res.pairs and "leading digits '1'" in res.problems[0][1]


def test_flexible_numeric_fallback_refuses_ambiguous_candidates():
    gt, why = match_flexible("3_a", {"3_x": Path("3_x.png"), "3_y": Path("3_y.png")})
    assert gt is None and "ambiguous" in why and "3_x.png" in why and "3_y.png" in why


def test_flexible_without_any_match_reports_the_image():
    res = pair_files(_paths("cat.png"), _gts("dog.png"), "flexible")
    assert res.problems == [(str(Path("/low/cat.png")), res.problems[0][1])]
    assert "no ground truth found" in res.problems[0][1]
    assert [p.name for p in res.unused_gt] == ["dog.png"]


def test_one_ground_truth_may_serve_several_exposures():
    res = pair_files(_paths("s_low.png", "s_dark.png"), _gts("s.png"), "flexible")
    assert _gt_of(res) == {"s_low.png": "s.png", "s_dark.png": "s.png"}


def test_duplicate_ground_truth_stems_are_an_error_naming_both():
    with pytest.raises(DataError, match="share a stem") as info:
        pair_files(_paths("a.png"), _gts("a.png", "sub/a.jpg"), "strict")
    assert "a.jpg" in str(info.value) and "a.png" in str(info.value)


def test_none_pairing_has_no_targets_and_needs_no_gt_folder():
    res = pair_files(_paths("a.png", "b.png"), None, "none")
    assert _gt_of(res) == {"a.png": None, "b.png": None}


def test_paired_mode_without_gt_folder_raises():
    with pytest.raises(DataError, match="needs a ground-truth folder"):
        pair_files(_paths("a.png"), None, "strict")


def test_unknown_pairing_mode_raises():
    with pytest.raises(DataError, match="unknown pairing mode"):
        pair_files(_paths("a.png"), [], "fuzzy")


@pytest.mark.parametrize("image,gt", [
    ("x.jpg", "x.jpg"), ("x.bmp", "x.png"), ("x.bmp", "x.jpg"), ("x_low.jpg", "x.png"),
    ("x_dark.jpg", "x.png"), ("x.jpg", "x_high.png"), ("x.jpg", "x_gt.png"),
])
def test_tester_name_patterns(tmp_path, image, gt):
    (tmp_path / gt).write_bytes(b"")
    assert gt_for_test_protocol(tmp_path / "in" / image, tmp_path) == tmp_path / gt


def test_tester_returns_none_without_a_candidate(tmp_path):
    (tmp_path / "x_normal.png").write_bytes(b"")
    assert gt_for_test_protocol("x.png", tmp_path) is None
