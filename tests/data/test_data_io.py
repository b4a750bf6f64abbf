import os

import cv2
import numpy as np
import pytest

from data_helpers import (encode_jpeg, garbage_in_scan, natural_rgb, rand_rgb, with_exif_orientation,
                          write)
from remdinet.data.io import (BadImageError, _NativeStderr, check_container, decode_raw,
                              jpeg_orientation, read_image, scan_folder)


def test_read_image_returns_rgb_float32_in_unit_range(tmp_path):
    img = np.zeros((4, 5, 3), np.uint8)
    img[0, 0] = (255, 0, 0)  # pure red in RGB
    out = read_image(write(tmp_path / "a.png", img))
    assert out.dtype == np.float32 and out.shape == (4, 5, 3)
    assert out[0, 0].tolist() == [1.0, 0.0, 0.0]
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_sixteen_bit_png_is_scaled_by_65535(tmp_path):
    img = np.zeros((3, 3, 3), np.uint16)
    img[0, 0] = (65535, 32768, 0)
    out = read_image(write(tmp_path / "a16.png", img))
    assert decode_raw(tmp_path / "a16.png").dtype == np.uint16
    np.testing.assert_allclose(out[0, 0], [1.0, 32768 / 65535, 0.0], rtol=1e-6)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = read_image(write(tmp_path / "g.png", grey))
    assert out.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey / np.float32(255))


def test_sixteen_bit_grayscale_is_read(tmp_path):
    grey = np.full((3, 4), 65535, np.uint16)
    out = read_image(write(tmp_path / "g16.png", grey))
    assert out.shape == (3, 4, 3) and np.all(out == 1.0)


def test_rgba_alpha_is_dropped_and_colour_kept(tmp_path):
    rgb = rand_rgb(1, 5, 6)
    rgba = np.dstack([rgb, np.zeros((5, 6), np.uint8)])  # fully transparent must not matter
    out = read_image(write(tmp_path / "rgba.png", rgba))
    np.testing.assert_array_equal(out, rgb / np.float32(255))


def test_unicode_path_is_read(tmp_path):
    rgb = rand_rgb(2, 5, 6)
    path = write(tmp_path / "dossier é" / "图像_ночь.png", rgb)
    np.testing.assert_array_equal(decode_raw(path), rgb)


def test_jpeg_with_trailing_bytes_after_end_marker_is_accepted(tmp_path):
    path = write(tmp_path / "a.jpg", rand_rgb(3, 16, 16))
    path.write_bytes(path.read_bytes() + b"\x00\x00trailer")
    assert read_image(path).shape == (16, 16, 3)


@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg_raises_naming_the_file(tmp_path, progressive):
    img = cv2.resize(rand_rgb(4, 20, 20), (64, 48))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    data = buf.tobytes()
    assert check_container(data) is None
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * 0.8)])
    with pytest.raises(BadImageError, match="truncated JPEG") as info:
        read_image(path)
    assert info.value.path == str(path) and "cut.jpg" in str(info.value)


def test_png_with_a_flipped_byte_raises_crc_error_naming_the_file(tmp_path):
    path = write(tmp_path / "bad.png", rand_rgb(5))
    data = bytearray(path.read_bytes())
    data[60] ^= 0xFF  # inside the IDAT chunk
    path.write_bytes(bytes(data))
    with pytest.raises(BadImageError, match="corrupt PNG") as info:
        read_image(path)
    assert "bad.png" in str(info.value)


def test_truncated_png_raises(tmp_path):
    path = write(tmp_path / "short.png", rand_rgb(6))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(BadImageError, match="truncated PNG"):
        read_image(path)


def test_truncated_bmp_raises(tmp_path):
    path = write(tmp_path / "short.bmp", rand_rgb(7))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(BadImageError, match="truncated BMP"):
        read_image(path)


def test_tiff_is_read(tmp_path):
    rgb = rand_rgb(8, 6, 7)
    np.testing.assert_array_equal(decode_raw(write(tmp_path / "t.tif", rgb)), rgb)


def test_non_image_suffix_raises_naming_the_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(BadImageError, match="not an image file") as info:
        read_image(path)
    assert "notes.txt" in str(info.value)


def test_text_with_image_suffix_raises_unrecognised_content(tmp_path):
    path = tmp_path / "fake.png"
    path.write_text("not really a png")
    with pytest.raises(BadImageError, match="unrecognised content"):
        read_image(path)


def test_empty_file_raises(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(BadImageError, match="empty file"):
        read_image(path)


def test_missing_file_raises(tmp_path):
    with pytest.raises(BadImageError, match="file not found"):
        read_image(tmp_path / "nope.png")


@pytest.mark.parametrize("seed, message", [(0, "extraneous bytes"), (1, "premature end")])
def test_jpeg_with_garbage_in_its_scan_data_raises_naming_the_file(tmp_path, seed, message):
    clean = encode_jpeg(natural_rgb(seed))
    bad = garbage_in_scan(clean, n=200, seed=seed)
    # the case of the issue: OpenCV decodes it without an error and half the pixels are wrong
    plain = cv2.imdecode(np.frombuffer(bad, np.uint8), cv2.IMREAD_UNCHANGED)
    good = cv2.imdecode(np.frombuffer(clean, np.uint8), cv2.IMREAD_UNCHANGED)
    assert plain is not None and check_container(bad) is None
    assert np.mean(np.any(plain != good, axis=2)) > 0.3
    path = tmp_path / "garbled.jpg"
    path.write_bytes(bad)
    with pytest.raises(BadImageError, match="corrupt JPEG image data") as info:
        read_image(path)
    assert info.value.path == str(path) and message in info.value.reason


def test_jpeg_with_extraneous_bytes_before_its_end_marker_raises(tmp_path):
    clean = encode_jpeg(natural_rgb(2, 32, 32))
    path = tmp_path / "padded.jpg"
    path.write_bytes(clean[:-2] + b"\x55" * 50 + clean[-2:])
    with pytest.raises(BadImageError, match="extraneous bytes"):
        decode_raw(path)


@pytest.mark.parametrize("params", [
    (), (cv2.IMWRITE_JPEG_QUALITY, 30), (cv2.IMWRITE_JPEG_QUALITY, 100),
    (cv2.IMWRITE_JPEG_PROGRESSIVE, 1), (cv2.IMWRITE_JPEG_OPTIMIZE, 1),
    (cv2.IMWRITE_JPEG_RST_INTERVAL, 2), (cv2.IMWRITE_JPEG_SAMPLING_FACTOR, 0x111111),
], ids=["default", "q30", "q100", "progressive", "optimized", "restart_markers", "444"])
def test_clean_jpegs_are_accepted_and_decode_as_opencv_does(tmp_path, params):
    rgb = natural_rgb(3, 40, 56)
    data = encode_jpeg(rgb, *params)
    path = tmp_path / "ok.jpg"
    path.write_bytes(data)
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(decode_raw(path), expected)


def test_clean_grey_jpeg_and_png_are_accepted(tmp_path):
    grey = natural_rgb(4, 24, 24)[:, :, 0]
    assert decode_raw(write(tmp_path / "g.jpg", grey)).shape == (24, 24, 3)
    np.testing.assert_array_equal(decode_raw(write(tmp_path / "p.png", rand_rgb(4))), rand_rgb(4))


def test_other_output_on_descriptor_2_while_decoding_is_passed_through(capfd):
    with _NativeStderr() as captured:
        os.write(2, b"some other library: hello\n")
    assert captured.damage() is None
    assert "some other library: hello" in capfd.readouterr().err


def test_jpeg_with_exif_orientation_6_is_turned_as_viewers_show_it(tmp_path):
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[:8, :8] = 255  # a white top-left corner
    data = with_exif_orientation(encode_jpeg(rgb, cv2.IMWRITE_JPEG_QUALITY, 100), 6)
    assert jpeg_orientation(data) == 6
    path = tmp_path / "portrait.jpg"
    path.write_bytes(data)
    turned = decode_raw(path)
    assert turned.shape == (32, 24, 3)  # 90 degrees clockwise: the corner is now top-right
    assert turned[:8, -8:].mean() > 240 and turned[:8, :8].mean() < 15
    np.testing.assert_allclose(turned.astype(int), np.rot90(rgb, -1).astype(int), atol=12)


def _symlink(link, target):
    try:
        os.symlink(target, link)
    except (OSError, NotImplementedError) as exc:  # e.g. Windows without the privilege
        pytest.skip(f"cannot make symbolic links here: {exc}")


def test_broken_and_looping_symbolic_links_are_named_with_their_reason(tmp_path):
    write(tmp_path / "ok.png", rand_rgb(1))
    _symlink(tmp_path / "dangling.png", tmp_path / "gone.png")
    _symlink(tmp_path / "loop.png", tmp_path / "loop.png")
    (tmp_path / "sub_target").mkdir()
    _symlink(tmp_path / "linked_dir", tmp_path / "sub_target")
    files, unusable = scan_folder(tmp_path)
    assert [f.name for f in files] == ["ok.png"]
    reasons = {os.path.basename(p): why for p, why in unusable}
    assert set(reasons) == {"dangling.png", "loop.png", "linked_dir"}
    assert "broken symbolic link" in reasons["dangling.png"] and "gone.png" in reasons["dangling.png"]
    assert "symbolic link loop" in reasons["loop.png"]
    assert "not followed" in reasons["linked_dir"]
    with pytest.raises(BadImageError, match="broken symbolic link"):
        decode_raw(tmp_path / "dangling.png")
    with pytest.raises(BadImageError, match="symbolic link loop"):
        decode_raw(tmp_path / "loop.png")
