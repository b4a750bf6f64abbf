"""Enhance a folder with a trained checkpoint and measure each image against its ground truth.

Protocol (the reference's tester, §7.2, with its §8.1.20 defects removed):

* one image per forward pass, at native resolution; the model pads to a multiple of 32 internally
  and crops back, so no padding reaches the metrics;
* the output is written as ``<stem>_enhanced.png`` (8-bit) and the metrics are computed on exactly
  those 8-bit values (as if the PNG were re-loaded), against the ground truth file;
* PSNR and Gaussian SSIM for every paired image; MS-SSIM only when the smaller side is > 160 pixels
  (the CSV cell is empty otherwise);
* ``metrics.csv`` holds one row per image and a final ``mean`` row (means over the images that have
  the value).

``layout`` is a dataset layout of :mod:`remdinet.data.layouts` (``auto`` detects it) whose ``split``
folder is enhanced, or ``plain``: the images directly in ``data_root``, without ground truth.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import load_model
from .data import DataError, is_image_name, pair_files, read_image, resolve_layout
from .data.io import scan_folder, write_png
from .metrics import MS_SSIM_MIN_SIDE, ms_ssim, psnr, ssim
from .model.image import ImageEnhancer
from .train import resolve_device

CSV_COLUMNS = ("name", "psnr", "ssim", "ms_ssim")
METRICS = ("psnr", "ssim", "ms_ssim")


def _images(folder: Path) -> list[Path]:
    found, unusable = scan_folder(folder)
    broken = [(p, why) for p, why in unusable if is_image_name(p)]  # named like an image: meant
    if broken:
        raise DataError(f"{len(broken)} image entr{'y' if len(broken) == 1 else 'ies'} of {folder} "
                        f"cannot be read:\n" + "\n".join(f"  {p}: {why}" for p, why in broken),
                        broken)
    files = [p for p in found if is_image_name(p)]
    if not files:
        raise DataError(f"no image files in {folder}")
    return files


def find_pairs(data_root: str | Path, layout: str = "auto", split: str = "test",
               pairing: str = "flexible") -> list[tuple[str, Path, Path | None]]:
    """``(name, image, ground truth or None)`` for each image of ``split``; unpaired images are an
    error (listed) unless ``pairing`` is ``none``."""
    root = Path(data_root)
    if layout == "plain":
        return [(p.relative_to(root).as_posix(), p, None) for p in _images(root)]
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    resolved = resolve_layout(root, layout)
    dirs = getattr(resolved, split)
    if dirs is None:
        raise DataError(f"{root}: layout {resolved.name} has no {split} folder")
    images = _images(dirs.low)
    if pairing == "none":
        gt_files = None
    elif dirs.gt is None:
        raise DataError(f"{dirs.low}: no ground-truth folder for split {split!r}; "
                        f"use pairing='none' to enhance without metrics")
    else:
        gt_files = _images(dirs.gt)
    result = pair_files(images, gt_files, pairing)
    if result.problems:
        raise DataError(f"{len(result.problems)} image(s) of {dirs.low} without ground truth:\n"
                        + "\n".join(f"  {p}: {why}" for p, why in result.problems),
                        result.problems)
    return [(img.relative_to(dirs.low).as_posix(), img, gt) for img, gt in result.pairs]


def _metrics(out01: torch.Tensor, target: torch.Tensor) -> dict[str, float | None]:
    values: dict[str, float | None] = {"psnr": float(psnr(out01, target)[0]),
                                       "ssim": float(ssim(out01, target)[0]), "ms_ssim": None}
    if min(out01.shape[-2:]) > MS_SSIM_MIN_SIDE:
        values["ms_ssim"] = float(ms_ssim(out01, target)[0])
    return values


def _mean_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    mean: dict[str, Any] = {"name": "mean"}
    for key in METRICS:
        values = [r[key] for r in rows if r[key] is not None]
        mean[key] = float(np.mean(values)) if values else None
    return mean


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Per-image rows and the ``mean`` row; a missing value is an empty cell."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for row in [*rows, _mean_row(rows)]:
            writer.writerow([row["name"]] + ["" if row[k] is None else f"{row[k]:.6f}" for k in METRICS])
    return path


@torch.no_grad()
def evaluate_folder(checkpoint: str | Path, data_root: str | Path, out_dir: str | Path | None = None,
                    layout: str = "auto", split: str = "test", pairing: str = "flexible",
                    device: str = "auto", quiet: bool = False) -> list[dict[str, Any]]:
    """Enhance every image of ``split`` and return per-image dicts
    ``{"name", "output", "psnr", "ssim", "ms_ssim"}`` (metrics None without ground truth, MS-SSIM
    None for small images). ``out_dir`` defaults to ``<run dir>/eval_<split>``."""
    checkpoint = Path(checkpoint)
    dev = resolve_device(device)
    model = ImageEnhancer(load_model(checkpoint, dev)[0])
    pairs = find_pairs(data_root, layout, split, pairing)
    out = Path(out_dir) if out_dir is not None else checkpoint.resolve().parent.parent / f"eval_{split}"
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    # disable=None: a bar on a terminal only, no carriage-return frames in a log file
    for name, image_path, gt_path in tqdm(pairs, desc=f"evaluate {split}", unit="img",
                                          disable=True if quiet else None):
        image = torch.from_numpy(read_image(image_path)).permute(2, 0, 1)[None].to(dev)
        enhanced = model(image)
        pixels = (enhanced[0].permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
        target_file = out / Path(name).with_name(f"{Path(name).stem}_enhanced.png")
        target_file.parent.mkdir(parents=True, exist_ok=True)
        write_png(target_file, pixels)
        row: dict[str, Any] = {"name": name, "output": str(target_file),
                               "psnr": None, "ssim": None, "ms_ssim": None}
        if gt_path is not None:
            gt = torch.from_numpy(read_image(gt_path)).permute(2, 0, 1)[None]
            if gt.shape != image.shape:
                raise DataError(f"size mismatch: {image_path} is {tuple(image.shape[-2:])}, its ground "
                                f"truth {gt_path} is {tuple(gt.shape[-2:])}")
            saved = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255.0
            row.update(_metrics(saved, gt))
        rows.append(row)
    write_csv(out / "metrics.csv", rows)
    return rows
