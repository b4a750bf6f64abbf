import pytest

from data_helpers import cfg_for, pair_tree, remdinet_tree
from remdinet.data import DataError, build_data, detect_layout, resolve_layout


def _lol_v1(root):
    pair_tree(root, "our485/low", "our485/high", ["2.png", "5.png", "9.png"])
    pair_tree(root, "eval15/low", "eval15/high", ["1.png"], seed=50)
    return root


def _lol_v2(base, n_train=3):
    pair_tree(base, "Train/Low", "Train/Normal", [f"normal{i:05d}.png" for i in range(n_train)])
    pair_tree(base, "Test/Low", "Test/Normal", ["normal00690.png"], seed=50)
    return base


def test_remdinet_layout_is_detected_and_loaded(tmp_path):
    remdinet_tree(tmp_path, n=4, val=2)
    assert detect_layout(tmp_path) == "remdinet"
    bundle = build_data(cfg_for(tmp_path))
    assert bundle.info.layout == "remdinet"
    assert (len(bundle.train), len(bundle.val)) == (4, 2)
    assert bundle.info.split.source == "folder"


def test_remdinet_test_split_is_recorded(tmp_path):
    remdinet_tree(tmp_path, n=3)
    pair_tree(tmp_path, "test_data", "test_gt", ["t.png"])
    info = build_data(cfg_for(tmp_path, data__val_split=0.4)).info
    assert info.test.low.name == "test_data"


def test_lol_v1_layout_uses_eval15_for_validation(tmp_path):
    _lol_v1(tmp_path)
    assert detect_layout(tmp_path) == "lol_v1"
    bundle = build_data(cfg_for(tmp_path))
    assert bundle.info.layout == "lol_v1"
    assert bundle.train.names() == ["2.png", "5.png", "9.png"] and bundle.val.names() == ["1.png"]


def test_lol_v2_real_captured_below_root_is_detected(tmp_path):
    _lol_v2(tmp_path / "Real_captured")
    assert detect_layout(tmp_path) == "lol_v2_real"
    layout = resolve_layout(tmp_path)
    assert layout.root.name == "Real_captured" and layout.val.low.name == "Low"
    bundle = build_data(cfg_for(tmp_path))
    assert (len(bundle.train), len(bundle.val)) == (3, 1)


def test_lol_v2_root_given_as_the_real_captured_folder(tmp_path):
    base = _lol_v2(tmp_path / "Real_captured")
    assert detect_layout(base) == "lol_v2_real"


def test_lol_v2_synthetic_is_detected_case_insensitively(tmp_path):
    base = tmp_path / "synthetic"
    pair_tree(base, "train/low", "train/normal", ["r1.png", "r2.png"])
    assert detect_layout(tmp_path) == "lol_v2_synthetic"
    assert len(build_data(cfg_for(tmp_path, data__val_split=0.5)).train) == 1


def test_lol_v2_root_with_both_subsets_needs_the_layout_name(tmp_path):
    _lol_v2(tmp_path / "Real_captured")
    _lol_v2(tmp_path / "Synthetic", n_train=2)
    with pytest.raises(DataError, match="ambiguous layout"):
        detect_layout(tmp_path)
    real = build_data(cfg_for(tmp_path, data__layout="lol_v2_real"))
    synth = build_data(cfg_for(tmp_path, data__layout="lol_v2_synthetic"))
    assert (len(real.train), len(synth.train)) == (3, 2)


def test_train_folder_in_an_unnamed_root_asks_for_the_layout(tmp_path):
    base = _lol_v2(tmp_path / "mydata")
    with pytest.raises(DataError, match="lol_v2_real or lol_v2_synthetic"):
        detect_layout(base)
    assert resolve_layout(base, "lol_v2_synthetic").name == "lol_v2_synthetic"


def test_unknown_layout_error_lists_what_was_looked_for(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError) as info:
        detect_layout(tmp_path)
    msg = str(info.value)
    for expected in ("train_data", "our485", "Real_captured", "Synthetic"):
        assert expected in msg


def test_explicit_layout_without_its_folders_raises(tmp_path):
    remdinet_tree(tmp_path, n=2)
    with pytest.raises(DataError, match="lol_v1 needs its training folder"):
        resolve_layout(tmp_path, "lol_v1")


def test_missing_root_raises(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        detect_layout(tmp_path / "nope")
