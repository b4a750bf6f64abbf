"""Image files: listing, integrity checks and decoding with OpenCV.

Every problem with a file raises :class:`BadImageError` naming the file and the reason; nothing is
decoded to a placeholder. Files are read as bytes (``np.fromfile``) and decoded with
``cv2.imdecode`` so that non-ASCII paths work on every platform.

Older OpenCV builds decode a truncated JPEG partially and only print a warning, so the container
structure is checked before decoding: a JPEG needs its EOI marker after the first scan, a PNG an
intact chunk sequence (lengths and CRCs) ending in IEND, a BMP at least the size its header declares.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tiff", ".tif")


class DataError(ValueError):
    """A dataset cannot be used as given; ``problems`` lists ``(path, reason)`` where known."""

    def __init__(self, message: str, problems: tuple[tuple[str, str], ...] | list = ()):
        super().__init__(message)
        self.problems = tuple(problems)


class BadImageError(DataError):
    """One file is not a usable image."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}", ((str(path), reason),))
        self.path = str(path)
        self.reason = reason


def is_image_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_files(folder: str | Path) -> list[Path]:
    """Every regular file below ``folder`` (recursive), sorted by full path string like the reference."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"not a folder: {folder}")
    return sorted((p for p in folder.rglob("*") if p.is_file()), key=str)


def _check_jpeg(data: bytes) -> str | None:
    # Walk the marker segments up to the first SOS; byte stuffing guarantees that FF D9 after it can
    # only be the EOI marker, so its absence means the entropy-coded data was cut off.
    pos = 2
    while True:
        if pos + 4 > len(data):
            return "truncated JPEG (header ends before the image data)"
        if data[pos] != 0xFF:
            return f"corrupt JPEG (no marker at byte {pos})"
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0xD9:
            return "corrupt JPEG (end marker before any image data)"
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker == 0xDA:
            if data.find(b"\xff\xd9", pos + 2 + length) < 0:
                return "truncated JPEG (no end-of-image marker after the image data)"
            return None
        pos += 2 + length


def _check_png(data: bytes) -> str | None:
    pos = 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 8 + length
        if end + 4 > len(data):
            return f"truncated PNG (chunk {kind!r} runs past the end of the file)"
        (crc,) = struct.unpack(">I", data[end:end + 4])
        if zlib.crc32(data[pos + 4:end]) != crc:
            return f"corrupt PNG (CRC mismatch in chunk {kind!r} at byte {pos})"
        if kind == b"IEND":
            return None
        pos = end + 4
    return "truncated PNG (no IEND chunk)"


def _check_bmp(data: bytes) -> str | None:
    if len(data) < 6:
        return "truncated BMP header"
    (declared,) = struct.unpack("<I", data[2:6])
    if len(data) < declared:
        return f"truncated BMP ({len(data)} of {declared} bytes)"
    return None


def check_container(data: bytes) -> str | None:
    """Return why the bytes are not a complete image file of a known format, or None if they are."""
    if not data:
        return "empty file"
    if data[:3] == b"\xff\xd8\xff":
        return _check_jpeg(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _check_png(data)
    if data[:2] == b"BM":
        return _check_bmp(data)
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return None  # libtiff reports truncation itself (decode returns None)
    return "not a JPEG, PNG, BMP or TIFF file (unrecognised content)"


def decode_raw(path: str | Path) -> np.ndarray:
    """Decode a file to an RGB ``H×W×3`` array in its native dtype (uint8 or uint16).

    Grayscale becomes 3 equal channels; an alpha channel is dropped.
    """
    path = Path(path)
    if not is_image_name(path):
        raise BadImageError(path, f"not an image file (suffix {path.suffix or '<none>'!r}; "
                                  f"accepted: {', '.join(IMAGE_SUFFIXES)})")
    if not path.is_file():
        raise BadImageError(path, "file not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    problem = check_container(data.tobytes())
    if problem is not None:
        raise BadImageError(path, problem)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BadImageError(path, "OpenCV could not decode the file (corrupt or unsupported)")
    if img.dtype not in (np.uint8, np.uint16):
        raise BadImageError(path, f"unsupported sample type {img.dtype} (8- or 16-bit integer only)")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    channels = img.shape[2]
    if channels in (1, 2):  # gray or gray + alpha
        return np.repeat(img[:, :, :1], 3, axis=2)
    if channels in (3, 4):
        return np.ascontiguousarray(img[:, :, 2::-1])  # BGR(A) -> RGB, alpha dropped
    raise BadImageError(path, f"unsupported channel count {channels}")


def to_float(raw: np.ndarray) -> np.ndarray:
    """Native-dtype RGB array -> float32 in [0, 1] (16-bit scaled by 65535)."""
    scale = 65535.0 if raw.dtype == np.uint16 else 255.0
    return raw.astype(np.float32) / np.float32(scale)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as float32 RGB ``H×W×3`` in [0, 1]; raise :class:`BadImageError` naming it."""
    return to_float(decode_raw(path))


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8/uint16 array as PNG (works with non-ASCII paths)."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise DataError(f"{path}: OpenCV could not encode the image")
    buf.tofile(str(path))
