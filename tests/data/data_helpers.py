"""Small image folders for the data tests (written with OpenCV, unicode-safe)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from remdinet.config import resolve


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
