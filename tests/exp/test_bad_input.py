"""Bad input through the command line: every kind gives exit code 2 and one clear message naming
the file or key (never a bare traceback), or with --skip-bad a counted skip recorded in MLflow;
the unusual but valid kinds (16-bit, grayscale, RGBA, unicode paths) load and train."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from remdinet.exp.cli import app

runner = CliRunner()
SIDE = 64  # the tiny preset's image size


def write_image(path: Path, array: np.ndarray) -> Path:
    """Any array OpenCV can encode (gray, BGR, BGRA; 8 or 16 bit); the suffix picks the format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, array)
    assert ok
    buf.tofile(str(path))
    return path


def pixels(seed: int, channels: int = 3, dtype=np.uint8, side: int = SIDE) -> np.ndarray:
    top = 65535 if dtype == np.uint16 else 255
    shape = (side, side) if channels == 1 else (side, side, channels)
    return np.random.default_rng(seed).integers(0, top + 1, size=shape).astype(dtype)


def dataset(root: Path, channels: int = 3, dtype=np.uint8, names=("0", "1")) -> Path:
    """Two training pairs and one validation pair in the remdinet layout."""
    for split, stems in (("train", names), ("val", ("v",))):
        for i, stem in enumerate(stems):
            gt = pixels(i + 10 * len(split), channels, dtype)
            write_image(root / f"{split}_data" / f"{stem}.png", gt // 4)
            write_image(root / f"{split}_gt" / f"{stem}.png", gt)
    return root


@pytest.fixture(scope="module")
def shared_uri(tmp_path_factory):
    """One MLflow store for the tests that only look at the error (creating a store takes
    seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}"


def train(tmp_path: Path, data: Path, *extra: str, uri: str | None = None):
    uri = uri or f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    result = runner.invoke(app, ["--tracking-uri", uri, "--quiet", "--threads", "1", "train",
                                 "--preset", "tiny", "--data", str(data),
                                 "--set", f"training.output_dir={tmp_path / 'out'}", *extra])
    return result, uri


def assert_clean_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.startswith("error: ") or "\nerror: " in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def corrupt_png(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[60] ^= 0xFF  # inside the image data chunk: its CRC no longer matches
    path.write_bytes(bytes(data))


def truncated_jpeg(path: Path) -> None:
    write_image(path, pixels(7))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def garbled_jpeg(path: Path, seed: int = 0) -> None:
    """A JPEG with 200 random bytes over the middle of its scan data: OpenCV decodes it without an
    error (about half the pixels wrong); only libjpeg's warning tells."""
    y, x = np.mgrid[0:96, 0:128]
    smooth = np.stack([x * 2.0, y * 2.6, (x + y) * 0.6 + 64], axis=-1)
    noise = np.random.default_rng(seed).normal(0, 8, smooth.shape)
    write_image(path, np.clip(smooth + noise, 0, 255).astype(np.uint8))
    data = bytearray(path.read_bytes())
    sos = data.find(b"\xff\xda")
    start, end = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big"), data.rindex(b"\xff\xd9")
    at = (start + end - 200) // 2
    data[at:at + 200] = np.random.default_rng(seed).integers(0, 256, 200, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    assert cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_COLOR) is not None


def make_bad(root: Path, kind: str) -> tuple[Path, str]:
    """A good data set with one problem of ``kind``: (the file concerned, the expected reason)."""
    dataset(root)
    if kind == "corrupt_png":
        corrupt_png(root / "train_data" / "1.png")
        return root / "train_data" / "1.png", "corrupt PNG (CRC mismatch"
    if kind == "truncated_jpeg":
        truncated_jpeg(root / "train_data" / "2.jpg")
        write_image(root / "train_gt" / "2.png", pixels(7))
        return root / "train_data" / "2.jpg", "truncated JPEG"
    if kind == "size_mismatch":
        write_image(root / "train_gt" / "1.png", pixels(1, side=SIDE - 8))
        return root / "train_data" / "1.png", "size mismatch with its ground truth"
    if kind == "missing_gt":
        (root / "train_gt" / "1.png").unlink()
        return root / "train_data" / "1.png", "no ground truth found"
    if kind == "non_image":
        (root / "train_data" / "notes.txt").write_text("not a picture")
        return root / "train_data" / "notes.txt", "not an image file"
    if kind == "garbled_jpeg":
        garbled_jpeg(root / "train_data" / "3.jpg")
        write_image(root / "train_gt" / "3.png", pixels(3, side=96))
        return root / "train_data" / "3.jpg", "corrupt JPEG image data"
    if kind == "dangling_link":
        (root / "train_data" / "1.png").unlink()
        (root / "train_data" / "1.png").symlink_to(root / "moved" / "1.png")
        return root / "train_data" / "1.png", "broken symbolic link"
    raise AssertionError(kind)


BAD_KINDS = ["corrupt_png", "truncated_jpeg", "size_mismatch", "missing_gt", "non_image",
             "garbled_jpeg", "dangling_link"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_a_bad_file_stops_training_with_its_name_and_reason(tmp_path, shared_uri, kind):
    path, reason = make_bad(tmp_path / "data", kind)
    result, _ = train(tmp_path, tmp_path / "data", uri=shared_uri)
    assert_clean_error(result, str(path), reason, "data.skip_bad")


def test_an_empty_folder_is_named(tmp_path, shared_uri):
    root = dataset(tmp_path / "data")
    for f in (root / "val_data").iterdir():
        f.unlink()
    result, _ = train(tmp_path, root, uri=shared_uri)
    assert_clean_error(result, f"empty folder: {root / 'val_data'}")


def test_a_data_root_without_a_known_layout_is_named(tmp_path, shared_uri):
    (tmp_path / "data").mkdir()
    result, _ = train(tmp_path, tmp_path / "data", uri=shared_uri)
    assert_clean_error(result, str(tmp_path / "data"), "no known dataset layout")


def test_a_study_on_bad_data_stops_before_any_trial(tmp_path, shared_uri):
    path, reason = make_bad(tmp_path / "data", "corrupt_png")
    spec = tmp_path / "s.toml"
    spec.write_text('[study]\npreset = "tiny"\nn_trials = 2\n'
                    '[space."color_thresholds.min_saturation"]\ntype = "float"\n'
                    'low = 0.05\nhigh = 0.2\n')
    storage = tmp_path / "mlruns" / "optuna.db"
    result = runner.invoke(app, ["--tracking-uri", shared_uri,
                                 "study", "run", str(spec), "--data", str(tmp_path / "data"),
                                 "--storage", f"sqlite:///{storage}", "--workers", "2"])
    assert_clean_error(result, str(path), reason)
    assert not storage.exists()  # refused before the study was created


@pytest.mark.parametrize("body, fragments", [
    ('[study]\npreset = "tiny"\nn_trial = 3\n'
     '[space."color_thresholds.min_saturation"]\ntype = "float"\nlow = 0.05\nhigh = 0.2\n',
     ["[study]: unknown key(s) n_trial", "valid:"]),
    ('[study]\npreset = "tiny"\n'
     '[space."color_thresholds.min_saturation"]\ntype = "float"\nlow = 0.3\nhigh = 0.2\n',
     ['[space."color_thresholds.min_saturation"]', "low (0.3) must be less than high (0.2)"]),
    ('[study]\npreset = "tiny"\n'
     '[space."model.decoder_heads"]\ntype = "categorical"\nchoices = []\n',
     ['[space."model.decoder_heads"]', "categorical needs a non-empty list 'choices'"]),
    ('[study]\npreset = "tiny"\n[space."model.no_such_key"]\ntype = "int"\nlow = 1\nhigh = 2\n',
     ['[space."model.no_such_key"]', "no_such_key"]),
], ids=["unknown_key", "min_above_max", "empty_categorical", "unknown_config_key"])
def test_an_invalid_study_file_is_refused_naming_the_file_and_key(tmp_path, shared_uri, body,
                                                                  fragments):
    spec = tmp_path / "bad_study.toml"
    spec.write_text(body)
    storage = tmp_path / "optuna.db"
    result = runner.invoke(app, ["--tracking-uri", shared_uri, "study",
                                 "run", str(spec), "--storage", f"sqlite:///{storage}"])
    assert_clean_error(result, str(spec), *fragments)
    assert not storage.exists()


@pytest.mark.parametrize("args, fragments", [
    (["ablate", "--preset", "tiny", "--disable-fix", "colour_clamps"],
     ["unknown fix 'colour_clamps'", "color_clamps"]),
    (["train", "--preset", "tiny", "--set", "fixes.disable=[\"colour_clamps\"]"],
     ["colour_clamps", "color_clamps"]),
], ids=["ablate", "train"])
def test_an_unknown_fix_name_is_refused_listing_the_valid_ones(shared_uri, args, fragments):
    result = runner.invoke(app, ["--tracking-uri", shared_uri, *args])
    assert_clean_error(result, *fragments)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("kind", ["16bit", "grayscale", "rgba", "unicode_path"])
def test_unusual_but_valid_images_load_and_train(tmp_path, kind):
    if kind == "unicode_path":
        root = dataset(tmp_path / "données_夜景", names=("画像_0", "bild_ü"))
    else:
        channels, dtype = {"16bit": (3, np.uint16), "grayscale": (1, np.uint8),
                           "rgba": (4, np.uint8)}[kind]
        root = dataset(tmp_path / "data", channels, dtype)
    result, uri = train(tmp_path, root)
    assert result.exit_code == 0, result.output
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["data.train_images"] == 2
    assert run.data.metrics["data.val_images"] == 1
    assert run.data.metrics["data.skipped"] == 0
    assert np.isfinite(run.data.metrics["final_psnr"])


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_skip_bad_counts_and_records_every_skipped_file_in_mlflow(tmp_path):
    root = dataset(tmp_path / "data", names=("0", "1", "2"))
    expected = {}
    for kind, stem in (("corrupt_png", "9"), ("truncated_jpeg", "8"), ("size_mismatch", "7"),
                       ("missing_gt", "6"), ("non_image", "5")):
        if kind == "corrupt_png":
            write_image(root / "train_data" / "9.png", pixels(9))
            write_image(root / "train_gt" / "9.png", pixels(9))
            corrupt_png(root / "train_data" / "9.png")
            expected[root / "train_data" / "9.png"] = "corrupt PNG"
        elif kind == "truncated_jpeg":
            truncated_jpeg(root / "train_data" / "8.jpg")
            write_image(root / "train_gt" / "8.png", pixels(8))
            expected[root / "train_data" / "8.jpg"] = "truncated JPEG"
        elif kind == "size_mismatch":
            write_image(root / "train_data" / "7.png", pixels(7))
            write_image(root / "train_gt" / "7.png", pixels(7, side=SIDE - 8))
            expected[root / "train_data" / "7.png"] = "size mismatch"
        elif kind == "missing_gt":
            write_image(root / "train_data" / "x_orphan.png", pixels(6))
            expected[root / "train_data" / "x_orphan.png"] = "no ground truth"
        else:
            (root / "train_data" / "readme.md").write_text("notes")
            expected[root / "train_data" / "readme.md"] = "not an image file"
    garbled_jpeg(root / "train_data" / "4.jpg")
    write_image(root / "train_gt" / "4.png", pixels(4, side=96))
    expected[root / "train_data" / "4.jpg"] = "corrupt JPEG image data"
    (root / "train_data" / "3.png").symlink_to(root / "nowhere.png")
    expected[root / "train_data" / "3.png"] = "broken symbolic link"
    write_image(root / "train_gt" / "3.png", pixels(3))  # unused: its image is the broken link
    write_image(root / "train_gt" / "spare.png", pixels(2))  # unused: no image at all
    result, uri = train(tmp_path, root, "--skip-bad")
    assert result.exit_code == 0, result.output
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert run.data.metrics["data.skipped"] == len(expected)
    assert run.data.metrics["data.train_images"] == 3
    unused = json.loads(Path(client.download_artifacts(run.info.run_id, "data/unused_gt.json",
                                                       str(tmp_path))).read_text())
    assert unused == [str(root / "train_gt" / "3.png"), str(root / "train_gt" / "spare.png")]
    assert run.data.metrics["data.unused_gt"] == 2
    assert run.data.params["data.skip_bad"] == "true"
    skipped = json.loads(Path(client.download_artifacts(run.info.run_id, "data/skipped.json",
                                                         str(tmp_path))).read_text())
    assert {Path(s["file"]): s["reason"] for s in skipped}.keys() == expected.keys()
    for entry in skipped:
        assert expected[Path(entry["file"])] in entry["reason"]
