import os

import cv2
import numpy as np
import pytest
import torch

from data_helpers import (cfg_for, encode_jpeg, garbage_in_scan, natural_rgb, pair_tree, rand_rgb,
                          remdinet_tree, with_exif_orientation, write)
from remdinet.data import DataError, build_data


def _corrupt_png(path):
    data = bytearray(path.read_bytes())
    data[60] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path, keep=0.7):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _bad_case(root, kind):
    """Make one problem of ``kind`` in a 4-pair remdinet tree; return the file name it concerns."""
    remdinet_tree(root, n=4)
    if kind == "corrupt_png":
        _corrupt_png(root / "train_data" / "1.png")
        return "1.png"
    if kind == "truncated_jpeg":
        write(root / "train_data" / "j.jpg", rand_rgb(9))
        write(root / "train_gt" / "j.png", rand_rgb(9))
        _truncate(root / "train_data" / "j.jpg")
        return "j.jpg"
    if kind == "non_image":
        (root / "train_data" / "notes.txt").write_text("hello")
        return "notes.txt"
    if kind == "size_mismatch":
        write(root / "train_gt" / "2.png", rand_rgb(2, 21, 24))
        return "2.png"
    if kind == "missing_gt":
        write(root / "train_data" / "orphan.png", rand_rgb(3))
        return "orphan.png"
    if kind == "corrupt_gt":
        _corrupt_png(root / "train_gt" / "3.png")
        return "3.png"
    if kind == "garbled_jpeg":  # decodes without an OpenCV error, with wrong pixels
        rgb = natural_rgb(0)
        (root / "train_data" / "g.jpg").write_bytes(garbage_in_scan(encode_jpeg(rgb // 4)))
        write(root / "train_gt" / "g.png", rgb)
        return "g.jpg"
    if kind in ("dangling_link", "link_loop"):
        link = root / "train_data" / "l.png"
        _symlink(link, root / "gone.png" if kind == "dangling_link" else link)
        return "l.png"
    raise AssertionError(kind)


def _symlink(link, target):
    try:
        os.symlink(target, link)
    except (OSError, NotImplementedError) as exc:
        pytest.skip(f"cannot make symbolic links here: {exc}")


KINDS = ["corrupt_png", "truncated_jpeg", "non_image", "size_mismatch", "missing_gt", "corrupt_gt",
         "garbled_jpeg", "dangling_link", "link_loop"]


@pytest.mark.parametrize("pairing", ["strict", "flexible"])
@pytest.mark.parametrize("kind", KINDS)
def test_each_bad_input_raises_naming_the_file(tmp_path, kind, pairing):
    name = _bad_case(tmp_path, kind)
    with pytest.raises(DataError) as info:
        build_data(cfg_for(tmp_path, data__pairing=pairing))
    assert name in str(info.value) and "skip_bad" in str(info.value)
    assert any(p.endswith(name) for p, _ in info.value.problems)


@pytest.mark.parametrize("kind", KINDS)
def test_skip_bad_turns_each_bad_input_into_a_counted_logged_skip(tmp_path, kind, logged):
    name = _bad_case(tmp_path, kind)
    bundle = build_data(cfg_for(tmp_path, data__skip_bad=True, data__val_split=0.34))
    info = bundle.info
    assert info.counts.skipped == len(info.skipped) >= 1
    assert any(s.file.endswith(name) for s in info.skipped)
    assert any("skipped" in m and name in m for m in logged.messages)
    used = set(info.split.train) | set(info.split.val)
    assert name not in used or kind == "corrupt_gt"
    expected_pairs = 3 if kind in ("corrupt_png", "size_mismatch", "corrupt_gt") else 4
    assert info.counts.train + info.counts.val == expected_pairs


def test_a_bad_ground_truth_also_names_the_image_it_drops(tmp_path):
    _bad_case(tmp_path, "corrupt_gt")
    info = build_data(cfg_for(tmp_path, data__skip_bad=True, data__val_split=0.34)).info
    reasons = {s.file.split("/")[-2] + "/" + s.file.split("/")[-1]: s.reason
               for s in info.skipped}
    assert "CRC" in reasons["train_gt/3.png"] and "unusable" in reasons["train_data/3.png"]


def test_all_bad_files_are_listed_in_one_error(tmp_path):
    remdinet_tree(tmp_path, n=4)
    _corrupt_png(tmp_path / "train_data" / "0.png")
    (tmp_path / "train_data" / "readme.md").write_text("x")
    with pytest.raises(DataError) as info:
        build_data(cfg_for(tmp_path))
    assert "0.png" in str(info.value) and "readme.md" in str(info.value)
    assert len(info.value.problems) == 2


def test_non_image_file_in_the_ground_truth_folder_is_reported(tmp_path):
    remdinet_tree(tmp_path, n=4)
    (tmp_path / "train_gt" / "Thumbs.db").write_bytes(b"\x00")
    with pytest.raises(DataError, match="Thumbs.db"):
        build_data(cfg_for(tmp_path))


@pytest.mark.parametrize("skip_bad", [False, True])
def test_empty_folder_is_an_error_even_with_skip_bad(tmp_path, skip_bad):
    (tmp_path / "train_data").mkdir()
    (tmp_path / "train_gt").mkdir()
    with pytest.raises(DataError, match="empty folder: .*train_data"):
        build_data(cfg_for(tmp_path, data__skip_bad=skip_bad))


def test_empty_validation_folder_is_an_error(tmp_path):
    remdinet_tree(tmp_path, n=3)
    (tmp_path / "val_data").mkdir()
    (tmp_path / "val_gt").mkdir()
    with pytest.raises(DataError, match="empty folder: .*val_data"):
        build_data(cfg_for(tmp_path))


def test_nothing_usable_left_after_skipping_is_an_error(tmp_path):
    remdinet_tree(tmp_path, n=1)
    _corrupt_png(tmp_path / "train_data" / "0.png")
    with pytest.raises(DataError, match="no usable training pairs"):
        build_data(cfg_for(tmp_path, data__skip_bad=True))


def test_missing_ground_truth_folder_is_an_error_unless_unpaired(tmp_path):
    write(tmp_path / "train_data" / "a.png", rand_rgb(0))
    write(tmp_path / "train_data" / "b.png", rand_rgb(1))
    with pytest.raises(DataError, match="needs a ground-truth folder"):
        build_data(cfg_for(tmp_path))
    bundle = build_data(cfg_for(tmp_path, data__pairing="none", data__val_split=0.5))
    assert bundle.train[0]["target"] is None


def test_unicode_paths_load(tmp_path):
    root = tmp_path / "données 夜"
    pair_tree(root, "train_data", "train_gt", ["ночь_1.png", "ночь_2.png"])
    bundle = build_data(cfg_for(root, data__val_split=0.5))
    assert bundle.train[0]["input"].shape == (3, 16, 16)
    assert {n.startswith("ночь_") for n in bundle.info.split.train} == {True}


def test_mixed_bit_depth_and_channel_files_load_together(tmp_path):
    import numpy as np
    write(tmp_path / "train_data" / "a.png", rand_rgb(0, dtype=np.uint16))
    write(tmp_path / "train_gt" / "a.png", rand_rgb(1))
    write(tmp_path / "train_data" / "b.png", rand_rgb(2)[:, :, 0])
    write(tmp_path / "train_gt" / "b.png", np.dstack([rand_rgb(3), np.full((20, 24), 255, np.uint8)]))
    bundle = build_data(cfg_for(tmp_path, data__val_split=0.0, data__augment=False))
    assert len(bundle.train) == 2 and all(bundle.train[i]["input"].shape == (3, 16, 16)
                                          for i in range(2))


def test_flexible_pairing_with_suffixes_through_build_data(tmp_path):
    pair_tree(tmp_path, "train_data", "train_gt", ["1_low.png", "2_dark.png", "3.png"],
              gt_names=["1_high.png", "2.png", "3_gt.png"])
    bundle = build_data(cfg_for(tmp_path, data__val_split=0.0))
    assert {s.name: s.target.name for s in bundle.train.samples} == {
        "1_low.png": "1_high.png", "2_dark.png": "2.png", "3.png": "3_gt.png"}
    with pytest.raises(DataError, match="1_low.png"):
        build_data(cfg_for(tmp_path, data__pairing="strict", data__val_split=0.0))


def test_unused_ground_truth_is_recorded(tmp_path, logged):
    remdinet_tree(tmp_path, n=3)
    write(tmp_path / "train_gt" / "extra.png", rand_rgb(5))
    info = build_data(cfg_for(tmp_path, data__val_split=0.34)).info
    assert [p.split("/")[-1] for p in info.unused_gt] == ["extra.png"]
    assert "1 ground-truth files unused" in logged.messages[-1]


def test_each_unused_ground_truth_file_is_named_in_the_log(tmp_path, logged):
    remdinet_tree(tmp_path, n=3)
    for name in ("extra.png", "spare.png"):
        write(tmp_path / "train_gt" / name, rand_rgb(5))
    build_data(cfg_for(tmp_path, data__val_split=0.34))
    named = [m for m in logged.messages if "ground truth unused" in m]
    assert len(named) == 2
    assert str(tmp_path / "train_gt" / "extra.png") in named[0]
    assert str(tmp_path / "train_gt" / "spare.png") in named[1]


def test_a_dangling_link_is_named_not_counted_as_unused_ground_truth(tmp_path, logged):
    remdinet_tree(tmp_path, n=4)
    (tmp_path / "train_data" / "1.png").unlink()
    _symlink(tmp_path / "train_data" / "1.png", tmp_path / "elsewhere" / "1.png")
    with pytest.raises(DataError, match="broken symbolic link") as info:
        build_data(cfg_for(tmp_path, data__val_split=0.34))
    assert str(tmp_path / "train_data" / "1.png") in str(info.value)
    info = build_data(cfg_for(tmp_path, data__val_split=0.34, data__skip_bad=True)).info
    assert [s.file for s in info.skipped] == [str(tmp_path / "train_data" / "1.png")]
    assert any("skipped" in m and "1.png" in m and "symbolic link" in m for m in logged.messages)
    assert info.unused_gt == [str(tmp_path / "train_gt" / "1.png")]  # and its GT is named


def test_exif_rotated_jpeg_pairs_with_ground_truth_stored_as_viewers_show_it(tmp_path):
    remdinet_tree(tmp_path, n=3, h=24, w=32)
    upright = natural_rgb(5, 32, 24)  # portrait, as a viewer shows the photograph
    stored = np.rot90(upright, 1)  # the camera's landscape pixels; orientation 6 turns them back
    (tmp_path / "train_data" / "p.jpg").write_bytes(
        with_exif_orientation(encode_jpeg(stored // 4, cv2.IMWRITE_JPEG_QUALITY, 95), 6))
    write(tmp_path / "train_gt" / "p.png", upright)
    info = build_data(cfg_for(tmp_path, data__val_split=0.0)).info
    assert "p.jpg" in info.split.train and info.counts.skipped == 0


def test_size_mismatch_caused_by_exif_orientation_says_so(tmp_path):
    remdinet_tree(tmp_path, n=3, h=24, w=32)
    stored = natural_rgb(5, 24, 32)
    (tmp_path / "train_data" / "p.jpg").write_bytes(
        with_exif_orientation(encode_jpeg(stored // 4), 6))
    write(tmp_path / "train_gt" / "p.png", stored)  # GT kept in the unturned pixel order
    with pytest.raises(DataError, match="size mismatch") as info:
        build_data(cfg_for(tmp_path, data__val_split=0.0))
    assert "p.jpg has EXIF orientation 6" in str(info.value)


def test_seeded_split_is_recorded_reproducible_and_matches_random_split(tmp_path):
    remdinet_tree(tmp_path, n=10)
    cfg = cfg_for(tmp_path, data__val_split=0.3, data__split_seed=7)
    a = build_data(cfg).info.split
    b = build_data(cfg).info.split
    assert a == b and a.source == "seeded" and a.seed == 7 and a.fraction == 0.3
    assert len(a.val) == 3 and len(a.train) == 7 and not set(a.val) & set(a.train)
    names = sorted(f"{i}.png" for i in range(10))  # sorted by path like the reference
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(7)).tolist()
    assert sorted(a.val) == sorted(names[i] for i in perm[7:])
    other = build_data(cfg_for(tmp_path, data__val_split=0.3, data__split_seed=8))
    assert other.info.split.val != a.val


def test_validation_folder_wins_over_the_seeded_split(tmp_path):
    remdinet_tree(tmp_path, n=4, val=2)
    info = build_data(cfg_for(tmp_path, data__val_split=0.5)).info
    assert info.split.source == "folder" and info.split.val == ["v0.png", "v1.png"]
    assert len(info.split.train) == 4


def test_a_split_that_leaves_no_validation_image_is_an_error(tmp_path):
    remdinet_tree(tmp_path, n=3)
    with pytest.raises(DataError, match="leaves no validation image"):
        build_data(cfg_for(tmp_path, data__val_split=0.2))
    assert len(build_data(cfg_for(tmp_path, data__val_split=0.0)).val) == 0


def test_explicit_layout_for_the_embedded_set_must_be_remdinet():
    with pytest.raises(DataError, match="data.root is empty"):
        build_data(cfg_for("", data__layout="lol_v1"))
