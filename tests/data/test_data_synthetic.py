import json

import numpy as np
import pytest

from data_helpers import cfg_for
from remdinet.config import SyntheticConfig
from remdinet.data import build_data, dataset_stats, detect_layout, ensure_dataset
from remdinet.data.synthetic import SCENES, dataset_dir, degrade


def _tiny(tmp_path, **kw):
    return SyntheticConfig(size=32, crops_per_image=1, cache_dir=str(tmp_path), **kw)


def test_tiny_set_is_written_in_the_remdinet_layout_with_a_manifest(tmp_path, logged):
    root = ensure_dataset(_tiny(tmp_path))
    assert detect_layout(root) == "remdinet"
    manifest = json.loads((root / "manifest.json").read_text())
    n_files = sum(len(f) for f in SCENES.values())
    assert manifest["summary"]["count"] == n_files
    for split in ("train", "val"):
        lows = sorted(p.name for p in (root / f"{split}_data").iterdir())
        gts = sorted(p.name for p in (root / f"{split}_gt").iterdir())
        assert lows == gts and len(lows) == manifest["summary"][split] > 0
    assert "mean input PSNR" in logged.messages[0]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp folder renamed away


def test_split_is_by_scene_and_fixed_by_the_seed(tmp_path):
    root = ensure_dataset(_tiny(tmp_path))
    records = json.loads((root / "manifest.json").read_text())["images"]
    split_of_scene = {}
    for r in records:
        scene = next(s for s, files in SCENES.items() if r["source"] in files)
        split_of_scene.setdefault(scene, set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of_scene.values())  # no scene on both sides
    again = ensure_dataset(_tiny(tmp_path / "other"))
    assert sorted(p.name for p in (again / "val_data").iterdir()) == \
        sorted(p.name for p in (root / "val_data").iterdir())


def test_second_call_reuses_the_cached_set(tmp_path):
    root = ensure_dataset(_tiny(tmp_path))
    stamp = (root / "manifest.json").stat().st_mtime_ns
    assert ensure_dataset(_tiny(tmp_path)) == root
    assert (root / "manifest.json").stat().st_mtime_ns == stamp


def test_other_parameters_get_another_folder(tmp_path):
    assert dataset_dir(_tiny(tmp_path)) != dataset_dir(_tiny(tmp_path, seed=5))
    assert dataset_dir(_tiny(tmp_path)).parent == tmp_path


def test_incomplete_cached_set_is_reported(tmp_path):
    root = ensure_dataset(_tiny(tmp_path))
    victim = next((root / "train_gt").iterdir())
    victim.unlink()
    with pytest.raises(ValueError, match=f"incomplete.*{victim.name}"):
        ensure_dataset(_tiny(tmp_path))


def test_stats_measured_from_files_match_the_manifest(tmp_path):
    root = ensure_dataset(_tiny(tmp_path))
    stats = dataset_stats(root)
    summary = json.loads((root / "manifest.json").read_text())["summary"]
    assert stats["count"] == summary["count"] and stats["size"] == (32, 32)
    assert stats["mean_input_psnr"] == pytest.approx(summary["mean_input_psnr"], abs=1e-3)
    assert 5.0 < stats["mean_input_psnr"] < 25.0  # dark and noisy, but not garbage


def test_no_val_folders_when_val_fraction_is_zero(tmp_path):
    root = ensure_dataset(_tiny(tmp_path, val_fraction=0.0))
    assert not (root / "val_data").exists()


def test_build_data_with_empty_root_uses_the_embedded_set(tmp_path):
    cfg = cfg_for("", synthetic__size=32, synthetic__crops_per_image=1,
                  synthetic__cache_dir=str(tmp_path))
    bundle = build_data(cfg)
    assert bundle.info.embedded and bundle.info.layout == "remdinet"
    assert bundle.info.split.source == "folder"
    assert len(bundle.train) + len(bundle.val) == sum(len(f) for f in SCENES.values())
    assert bundle.train[0]["target"].shape == (3, 16, 16)


def test_degradation_darkens_and_adds_signal_dependent_noise():
    gt = np.full((64, 64, 3), 200, np.uint8)
    cfg = SyntheticConfig(exposure_min=0.1, exposure_max=0.1, read_noise=0.0)
    low, exposure = degrade(gt, cfg, np.random.default_rng(0))
    assert exposure == pytest.approx(0.1)
    expected = 255 * ((200 / 255) ** 2.2 * 0.1) ** (1 / 2.2)  # exposure acts in linear light
    assert abs(low.mean() - expected) < 1.0 and low.std() > 1.0
    more_light, _ = degrade(gt, SyntheticConfig(exposure_min=0.1, exposure_max=0.1, read_noise=0.0,
                                                full_well=1e6), np.random.default_rng(0))
    assert more_light.std() < low.std() / 5  # shot noise shrinks as the full well grows


def test_degradation_without_light_loss_or_noise_keeps_the_image():
    gt = np.random.default_rng(1).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    cfg = SyntheticConfig(exposure_min=1.0, exposure_max=1.0, full_well=1e7, read_noise=0.0)
    low, _ = degrade(gt, cfg, np.random.default_rng(0))
    assert np.abs(low.astype(int) - gt.astype(int)).max() <= 2


def test_read_noise_alone_makes_black_noisy():
    black = np.zeros((64, 64, 3), np.uint8)
    quiet, _ = degrade(black, SyntheticConfig(read_noise=0.0), np.random.default_rng(0))
    noisy, _ = degrade(black, SyntheticConfig(read_noise=0.01), np.random.default_rng(0))
    assert quiet.max() == 0 and noisy.mean() > 1.0


def test_losing_a_concurrent_build_race_keeps_the_winner_and_cleans_up(tmp_path, monkeypatch):
    import os
    import shutil

    import remdinet.data.synthetic as synthetic

    real_rename = os.rename

    def other_process_wins(src, dst):
        shutil.copytree(src, dst)  # a concurrent builder renamed its complete copy first
        real_rename(src, dst)

    monkeypatch.setattr(synthetic.os, "rename", other_process_wins)
    root = ensure_dataset(_tiny(tmp_path))
    assert (root / "manifest.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [root.name]
