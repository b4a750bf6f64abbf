import csv

import numpy as np
import pytest
import torch

from remdinet.data import DataError, read_image
from remdinet.data.io import write_png
from remdinet.evaluate import evaluate_folder
from remdinet.metrics import psnr, ssim
from remdinet.train import Trainer
from train_helpers import Stop, StopAfter, quiet_data, train_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(checkpoint after one epoch, root of the embedded set it trained on)."""
    cfg = train_config(tmp_path_factory.mktemp("synthetic"))
    data = quiet_data(cfg)
    trainer = Trainer(cfg, data=data, callbacks=[StopAfter(0)], quiet=True,
                      run_dir=tmp_path_factory.mktemp("run"))
    with pytest.raises(Stop):
        trainer.fit()
    return trainer.checkpoint_dir / "last.pth", data.info.root


def write(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, rgb)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_evaluate_writes_an_enhanced_png_per_image_and_a_csv_with_a_mean_row(run, tmp_path):
    checkpoint, root = run
    rows = evaluate_folder(checkpoint, root, tmp_path, split="val", quiet=True)
    assert len(rows) == 4
    for row in rows:
        out = read_image(row["output"])
        assert row["output"].endswith("_enhanced.png")
        assert out.shape == (64, 64, 3)  # native size, not the 48-px training size
        assert row["ms_ssim"] is None  # 64 px is too small for MS-SSIM
    table = _rows(tmp_path / "metrics.csv")
    assert list(table[0]) == ["name", "psnr", "ssim", "ms_ssim"]
    assert [r["name"] for r in table] == [r["name"] for r in rows] + ["mean"]
    assert all(r["ms_ssim"] == "" for r in table)
    assert float(table[-1]["psnr"]) == pytest.approx(np.mean([r["psnr"] for r in rows]), abs=1e-5)


def test_evaluate_metrics_are_those_of_the_written_pngs(run, tmp_path):
    checkpoint, root = run
    row = evaluate_folder(checkpoint, root, tmp_path, split="val", quiet=True)[0]
    out = torch.from_numpy(read_image(row["output"])).permute(2, 0, 1)[None]
    gt = torch.from_numpy(read_image(f"{root}/val_gt/{row['name']}")).permute(2, 0, 1)[None]
    assert row["psnr"] == pytest.approx(float(psnr(out, gt)[0]), abs=1e-4)
    assert row["ssim"] == pytest.approx(float(ssim(out, gt)[0]), abs=1e-5)


def test_evaluate_reports_ms_ssim_for_images_larger_than_160_px(run, tmp_path):
    checkpoint, _ = run
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, size=(170, 180, 3)).astype(np.uint8)
    write(tmp_path / "data" / "test_data" / "a.png", (gt // 8).astype(np.uint8))
    write(tmp_path / "data" / "test_gt" / "a.png", gt)
    write(tmp_path / "data" / "train_data" / "t.png", gt)
    write(tmp_path / "data" / "train_gt" / "t.png", gt)
    (row,) = evaluate_folder(checkpoint, tmp_path / "data", tmp_path / "out", quiet=True)
    assert row["ms_ssim"] is not None and 0.0 <= row["ms_ssim"] <= 1.0
    assert read_image(row["output"]).shape == (170, 180, 3)


def test_plain_folder_is_enhanced_at_native_size_without_metrics(run, tmp_path):
    checkpoint, _ = run
    write(tmp_path / "in" / "odd.png", np.full((50, 70, 3), 20, np.uint8))
    (row,) = evaluate_folder(checkpoint, tmp_path / "in", tmp_path / "out", layout="plain", quiet=True)
    assert read_image(row["output"]).shape == (50, 70, 3)
    assert row["psnr"] is None
    table = _rows(tmp_path / "out" / "metrics.csv")
    assert table[0]["psnr"] == "" and table[-1]["name"] == "mean"


def test_an_image_without_ground_truth_is_an_error_naming_it(run, tmp_path):
    checkpoint, _ = run
    img = np.full((32, 32, 3), 20, np.uint8)
    write(tmp_path / "train_data" / "t.png", img)
    write(tmp_path / "train_gt" / "t.png", img)
    write(tmp_path / "test_data" / "lonely.png", img)
    write(tmp_path / "test_gt" / "other.png", img)
    with pytest.raises(DataError, match="lonely"):
        evaluate_folder(checkpoint, tmp_path, tmp_path / "out", pairing="strict", quiet=True)


def test_a_broken_link_among_the_images_is_an_error_naming_it(run, tmp_path):
    checkpoint, _ = run
    write(tmp_path / "in" / "ok.png", np.full((32, 32, 3), 20, np.uint8))
    try:
        (tmp_path / "in" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    except (OSError, NotImplementedError) as exc:
        pytest.skip(f"cannot make symbolic links here: {exc}")
    with pytest.raises(DataError, match="gone.png: broken symbolic link"):
        evaluate_folder(checkpoint, tmp_path / "in", tmp_path / "out", layout="plain", quiet=True)
