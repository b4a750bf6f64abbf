"""Small image folders for the data tests (written with OpenCV, unicode-safe)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from remdinet.resolve import resolve


def rand_rgb(seed: int, h: int = 20, w: int = 24, dtype=np.uint8) -> np.ndarray:
    top = 65535 if dtype == np.uint16 else 255
    return np.random.default_rng(seed).integers(0, top + 1, size=(h, w, 3)).astype(dtype)


def write(path: Path, rgb_or_gray: np.ndarray, ext: str | None = None) -> Path:
    """Write an RGB (or 2-D grey, or RGBA) array; the suffix of ``path`` picks the format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rgb_or_gray
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    ok, buf = cv2.imencode(ext or path.suffix, np.ascontiguousarray(arr))
    assert ok
    buf.tofile(str(path))
    return path


def pair_tree(root: Path, low: str, gt: str, names: list[str], h: int = 20, w: int = 24,
              seed: int = 0, gt_names: list[str] | None = None) -> list[Path]:
    """Write low/gt images named ``names`` (gt optionally renamed) under root/low and root/gt."""
    paths = []
    for i, name in enumerate(names):
        img = rand_rgb(seed + i, h, w)
        paths.append(write(root / low / name, img // 4))
        write(root / gt / (gt_names[i] if gt_names else name), img)
    return paths


def cfg_for(root: Path | str, **overrides):
    flat = {"data.root": str(root), "training.image_size": 16, "training.batch_size": 2,
            "training.num_workers": 0}
    flat.update({k.replace("__", "."): v for k, v in overrides.items()})
    return resolve(flat)


def remdinet_tree(root: Path, n: int = 5, val: int = 0, h: int = 20, w: int = 24) -> Path:
    pair_tree(root, "train_data", "train_gt", [f"{i}.png" for i in range(n)], h, w)
    if val:
        pair_tree(root, "val_data", "val_gt", [f"v{i}.png" for i in range(val)], h, w, seed=100)
    return root


def natural_rgb(seed: int, h: int = 96, w: int = 128) -> np.ndarray:
    """Smooth gradients with a little noise: compresses like a photograph (random noise does not)."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w) + 64], axis=-1)
    noise = np.random.default_rng(seed).normal(0, 8, size=(h, w, 3))
    return np.clip(cv2.GaussianBlur(base + noise, (3, 3), 0), 0, 255).astype(np.uint8)


def scan_data_span(jpeg: bytes) -> tuple[int, int]:
    """[start, end) of the entropy-coded data of a single-scan JPEG (after SOS, before EOI)."""
    sos = jpeg.find(b"\xff\xda")
    start = sos + 2 + int.from_bytes(jpeg[sos + 2:sos + 4], "big")
    return start, jpeg.rindex(b"\xff\xd9")


def garbage_in_scan(jpeg: bytes, n: int = 200, seed: int = 0) -> bytes:
    """``jpeg`` with ``n`` random bytes written over the middle of its scan data (the length and
    the markers stay intact, so only a decoder can tell)."""
    start, end = scan_data_span(jpeg)
    assert end - start > 3 * n, "image too small for the corruption"
    at = (start + end - n) // 2
    data = bytearray(jpeg)
    data[at:at + n] = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    return bytes(data)


def encode_jpeg(rgb: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), list(params))
    assert ok
    return buf.tobytes()


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """``jpeg`` with an APP1 Exif segment holding only the orientation tag (0x0112)."""
    import struct
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]
