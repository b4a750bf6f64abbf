"""Image files: listing, integrity checks and decoding with OpenCV.

Every problem with a file raises :class:`BadImageError` naming the file and the reason; nothing is
decoded to a placeholder. Files are read as bytes (``np.fromfile``) and decoded with
``cv2.imdecode`` so that non-ASCII paths work on every platform.

Older OpenCV builds decode a truncated JPEG partially and only print a warning, so the container
structure is checked before decoding: a JPEG needs its EOI marker after the first scan, a PNG an
intact chunk sequence (lengths and CRCs) ending in IEND, a BMP at least the size its header declares.

Garbage inside a JPEG's entropy-coded data decodes without an error: libjpeg only prints an unnamed
warning ("Corrupt JPEG data: ...", "Premature end of JPEG file") on file descriptor 2 and returns an
image with wrong pixels. JPEG decoding therefore collects what native code writes to descriptor 2
(``_NativeStderr``; other output is passed through) and such a warning makes the file bad. JPEG has no
checksum: a corruption after which the decoder happens to resynchronise leaves no trace anywhere.

A JPEG is oriented by its EXIF orientation tag, as image viewers show it (OpenCV applies the tag
unless asked for the unchanged file); other formats are decoded unchanged.
"""
from __future__ import annotations

import errno
import os
import stat
import struct
import sys
import tempfile
import threading
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
    return scan_folder(folder)[0]


def scan_folder(folder: str | Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """The regular files below ``folder`` (as :func:`list_files`) and, sorted the same way, every
    other entry that is not a folder, as ``(path, reason)``: a broken or looping symbolic link, a link
    to a folder (not followed), a FIFO, socket or device."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"not a folder: {folder}")
    files, unusable = [], []
    for p in folder.rglob("*"):
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            if p.is_symlink():
                unusable.append((str(p), f"symbolic link to a folder ({os.readlink(p)}), which is "
                                         f"not followed; put the files or links to them here"))
        else:
            unusable.append((str(p), not_a_file_reason(p)))
    return sorted(files, key=str), sorted(unusable)


def not_a_file_reason(path: str | Path) -> str:
    """Why ``path``, which is not a regular file, cannot be read as one."""
    path = Path(path)
    if path.is_symlink():
        target = os.readlink(path)
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return f"symbolic link loop (-> {target})"
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return f"broken symbolic link (its target {target} does not exist)"
            return f"symbolic link that cannot be followed (-> {target}: {exc.strerror})"
        if path.is_dir():
            return f"symbolic link to a folder ({target}), not a file"
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "file not found"
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"))
    kind = next((name for test, name in kinds if test(mode)), "a special file")
    return f"not a regular file ({kind})"


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


def jpeg_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1-8) of JPEG bytes; 1 (upright) when there is none or it is invalid."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xDA, 0xD9):
            break
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        payload = data[pos + 4:pos + 2 + length]
        pos += 2 + length
        if marker != 0xE1 or payload[:6] != b"Exif\x00\x00":
            continue
        tiff = payload[6:]
        order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
        if order is None or len(tiff) < 8:
            return 1
        (ifd,) = struct.unpack(order + "I", tiff[4:8])
        if ifd + 2 > len(tiff):
            return 1
        (count,) = struct.unpack(order + "H", tiff[ifd:ifd + 2])
        for i in range(count):
            entry = tiff[ifd + 2 + 12 * i: ifd + 14 + 12 * i]
            if len(entry) < 12:
                return 1
            tag, kind = struct.unpack(order + "HH", entry[:4])
            if tag == 0x0112 and kind == 3:
                (value,) = struct.unpack(order + "H", entry[8:10])
                return value if 1 <= value <= 8 else 1
        return 1
    return 1


def exif_orientation(path: str | Path) -> int:
    """:func:`jpeg_orientation` of a file (1 for anything that is not a readable JPEG)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 17)
    except OSError:
        return 1
    return jpeg_orientation(head) if head[:3] == b"\xff\xd8\xff" else 1


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


# libjpeg's warnings that mean the image data is damaged (the pixels decoded are not the image's);
# "bad ICC marker" concerns only the colour profile, which is not used.
_JPEG_DAMAGE = ("Corrupt JPEG data", "Premature end of JPEG file")
_JPEG_HARMLESS = ("bad ICC marker",)
# IMREAD_UNCHANGED would ignore the EXIF orientation; JPEG is 8-bit grey or colour, so this keeps the rest
_JPEG_FLAGS = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH


class _NativeStderr:
    """Collects what native code (libjpeg) writes to file descriptor 2 while the block runs.

    One at a time per process (a lock); the text lands in a temporary file of this process (a forked
    worker makes its own). Output that is not libjpeg's is written on to the real descriptor 2.
    Where descriptor 2 cannot be redirected, nothing is collected (``text`` stays empty)."""

    _lock = threading.Lock()
    _file = None
    _pid = None

    def __enter__(self) -> "_NativeStderr":
        self.text, self._saved = "", None
        type(self)._lock.acquire()
        try:
            cls = type(self)
            if cls._pid != os.getpid():
                cls._file, cls._pid = tempfile.TemporaryFile(), os.getpid()
            for stream in (sys.stderr, sys.__stderr__):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001 - a closed or odd stream
                    pass
            self._saved = os.dup(2)
            os.dup2(cls._file.fileno(), 2)
        except OSError:
            if self._saved is not None:
                os.close(self._saved)
                self._saved = None
        except BaseException:
            type(self)._lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._saved is None:
                return
            os.dup2(self._saved, 2)
            os.close(self._saved)
            f = type(self)._file
            f.flush()
            if f.tell():
                f.seek(0)
                raw = f.read()
                f.seek(0)
                f.truncate()
                self.text = raw.decode("utf-8", "replace")
        finally:
            type(self)._lock.release()

    def damage(self) -> str | None:
        """libjpeg's first warning that the data is damaged; other lines go on to descriptor 2."""
        found, others = None, []
        for line in self.text.splitlines(keepends=True):
            if (line.startswith(_JPEG_DAMAGE) and not any(h in line for h in _JPEG_HARMLESS)):
                found = found or line.strip()
            else:
                others.append(line)
        if others:
            try:
                os.write(2, "".join(others).encode("utf-8", "replace"))
            except OSError:
                pass
        return found


def _reset_native_stderr_lock() -> None:
    # a worker forked while another thread decoded would inherit the lock held
    _NativeStderr._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_native_stderr_lock)


def decode_raw(path: str | Path) -> np.ndarray:
    """Decode a file to an RGB ``H×W×3`` array in its native dtype (uint8 or uint16).

    Grayscale becomes 3 equal channels; an alpha channel is dropped. A JPEG is turned as its EXIF
    orientation says (as viewers show it); one whose data the decoder reports damaged is bad.
    """
    path = Path(path)
    if not is_image_name(path):
        raise BadImageError(path, f"not an image file (suffix {path.suffix or '<none>'!r}; "
                                  f"accepted: {', '.join(IMAGE_SUFFIXES)})")
    if not path.is_file():
        raise BadImageError(path, not_a_file_reason(path))
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise BadImageError(path, f"cannot be read ({exc.strerror or exc})") from None
    head = data[:3].tobytes()
    problem = check_container(data.tobytes())
    if problem is not None:
        raise BadImageError(path, problem)
    if head == b"\xff\xd8\xff":
        with _NativeStderr() as messages:
            img = cv2.imdecode(data, _JPEG_FLAGS)
        damage = messages.damage()
        if damage is not None:
            raise BadImageError(path, f"corrupt JPEG image data (the decoder reported "
                                      f"{damage.rstrip('.')!r})")
    else:
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
    if channels in (3, 4):  # BGR(A) -> RGB, alpha dropped (cvtColor: 50x faster than numpy's copy)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGB)
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
