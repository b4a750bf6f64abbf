"""The embedded default data set: paired low-light images synthesised from scikit-image's photographs.

Source images. The colour photographs that scikit-image ships inside its package (no download):
astronaut, chelsea, coffee, rocket, motorcycle_left/right (one stereo scene) and ihc (a microscope
photograph). Synthetic pictures (color, logo, phantom, chessboards) and nearly black ones
(hubble_deep_field, retina's border) are left out: a ground truth should be a well exposed photograph.

Ground truth. ``crops_per_image`` square crops per source, side U(0.5, 1)·min(H, W) at a random place,
resized to ``size`` (area interpolation), kept as 8-bit sRGB.

Degradation, per crop, modelling an under-exposed capture by a linear sensor:

1. sRGB -> linear with a pure power law: ``L = G ** gamma`` (gamma 2.2 approximates the sRGB curve);
2. exposure: the sensor collects ``e · L`` of the light, ``e ~ U(exposure_min, exposure_max)``;
3. shot noise: photo-electrons ``n ~ Poisson(full_well · e · L)``, where ``full_well`` electrons map to
   full scale, so the signal-to-noise ratio grows as the square root of the light;
4. read noise: ``L' = n / full_well + N(0, read_noise²)`` (signal-independent, linear units);
5. clip to [0, 1] (no negative light, sensor saturation);
6. re-gamma ``L' ** (1 / gamma)`` (the camera's tone curve) and 8-bit quantisation (round to /255).

Because the exposure is not undone, the low image is dark *and* noisy, like LOL's inputs.

Split. A seeded split *by scene* (the two motorcycle views are one scene), so no crop of a validation
scene is seen in training: ``round(val_fraction · scenes)`` scenes, at least one when
``val_fraction > 0`` and at least one scene left for training. With ``val_fraction == 0`` no val
folders are written (the loader then splits by ``data.val_split``).

Storage. PNGs in the RemDiNet layout (``train_data``, ``train_gt``, ``val_data``, ``val_gt``) under
``<cache_dir or ~/.cache/remdinet>/synthetic-<hash>``, the hash covering the parameters, the source
bytes and the generator version; written to a temporary folder and renamed into place, so concurrent
builders never see a partial set. ``manifest.json`` records the parameters and per-image statistics.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from ..config import SyntheticConfig
from ..metrics import psnr
from ..paths import remove_inside
from .io import DataError, decode_raw, list_files, read_image, write_png
from .pairing import gt_index

_log = logging.getLogger(__name__)
GENERATOR_VERSION = 1
# scene name -> files of that scene
SCENES: dict[str, tuple[str, ...]] = {
    "astronaut": ("astronaut.png",),
    "chelsea": ("chelsea.png",),
    "coffee": ("coffee.png",),
    "rocket": ("rocket.jpg",),
    "motorcycle": ("motorcycle_left.png", "motorcycle_right.png"),
    "ihc": ("ihc.png",),
}
MIN_CROP_FRACTION = 0.5
_CROP_STREAM, _NOISE_STREAM, _SPLIT_STREAM = 1, 2, 3


def skimage_data_dir() -> Path:
    """scikit-image's bundled data folder, located without importing scikit-image."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise DataError("scikit-image is not installed; the embedded data set is built from its "
                        "bundled photographs (pip install scikit-image)")
    folder = Path(spec.origin).parent / "data"
    missing = [f for files in SCENES.values() for f in files if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder}: scikit-image lacks the photographs {', '.join(missing)}")
    return folder


def _digest(cfg: SyntheticConfig, sources: dict[str, str]) -> str:
    params = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "cache_dir"}
    blob = json.dumps({"version": GENERATOR_VERSION, "params": params, "sources": sources},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cache_base(cfg: SyntheticConfig) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else Path.home() / ".cache" / "remdinet"


def dataset_dir(cfg: SyntheticConfig) -> Path:
    """Where the set of ``cfg`` lives (whether or not it has been built)."""
    folder = skimage_data_dir()
    sources = {f: hashlib.sha256((folder / f).read_bytes()).hexdigest()
               for files in SCENES.values() for f in files}
    return cache_base(cfg) / f"synthetic-{_digest(cfg, sources)}"


def degrade(clean: np.ndarray, cfg: SyntheticConfig, rng: np.random.Generator
            ) -> tuple[np.ndarray, float]:
    """8-bit sRGB ground truth -> (8-bit low-light image, exposure used). See the module docstring."""
    linear = (clean.astype(np.float64) / 255.0) ** cfg.gamma
    exposure = float(rng.uniform(cfg.exposure_min, cfg.exposure_max))
    electrons = rng.poisson(cfg.full_well * exposure * linear)
    signal = electrons / cfg.full_well + rng.normal(0.0, cfg.read_noise, size=linear.shape)
    low = np.clip(signal, 0.0, 1.0) ** (1.0 / cfg.gamma)
    return np.round(low * 255.0).astype(np.uint8), exposure


def _crop(image: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    h, w = image.shape[:2]
    side = int(rng.integers(int(MIN_CROP_FRACTION * min(h, w)), min(h, w) + 1))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    patch = image[top:top + side, left:left + side]
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA), [top, left, side]


def _psnr8(low: np.ndarray, gt: np.ndarray) -> float:
    as_tensor = [torch.from_numpy(x.astype(np.float32) / 255.0).permute(2, 0, 1)[None] for x in (low, gt)]
    return float(psnr(*as_tensor)[0])


def _split_scenes(cfg: SyntheticConfig) -> list[str]:
    scenes = list(SCENES)
    if cfg.val_fraction == 0:
        return []
    n_val = min(max(1, round(cfg.val_fraction * len(scenes))), len(scenes) - 1)
    order = np.random.default_rng([_SPLIT_STREAM, cfg.seed]).permutation(len(scenes))
    return sorted(scenes[i] for i in order[:n_val])


def _build(cfg: SyntheticConfig, out: Path, source_dir: Path) -> dict:
    val_scenes = _split_scenes(cfg)
    splits = ("train", "val") if val_scenes else ("train",)
    for split in splits:
        (out / f"{split}_data").mkdir()
        (out / f"{split}_gt").mkdir()
    records = []
    for s_index, (scene, files) in enumerate(SCENES.items()):
        split = "val" if scene in val_scenes else "train"
        for f_index, name in enumerate(files):
            image = decode_raw(source_dir / name)
            for k in range(cfg.crops_per_image):
                key = [cfg.seed, s_index, f_index, k]
                gt, box = _crop(image, cfg.size, np.random.default_rng([_CROP_STREAM] + key))
                low, exposure = degrade(gt, cfg, np.random.default_rng([_NOISE_STREAM] + key))
                stem = f"{Path(name).stem}_{k:02d}"
                write_png(out / f"{split}_data" / f"{stem}.png", low)
                write_png(out / f"{split}_gt" / f"{stem}.png", gt)
                records.append({"name": f"{stem}.png", "split": split, "source": name,
                                "crop_top_left_side": box, "exposure": exposure,
                                "input_psnr": _psnr8(low, gt),
                                "input_mean": float(low.mean() / 255.0),
                                "gt_mean": float(gt.mean() / 255.0)})
    return {
        "generator_version": GENERATOR_VERSION,
        "params": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "cache_dir"},
        "source_dir": str(source_dir),
        "val_scenes": val_scenes,
        "images": records,
        "summary": _summary(records, cfg.size),
    }


def _summary(records: list[dict], size: int) -> dict:
    return {"count": len(records),
            "train": sum(r["split"] == "train" for r in records),
            "val": sum(r["split"] == "val" for r in records),
            "size": size,
            "mean_input_psnr": float(np.mean([r["input_psnr"] for r in records]))}


def _check_complete(folder: Path) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    missing = [f"{folder / (r['split'] + sub) / r['name']}" for r in manifest["images"]
               for sub in ("_data", "_gt") if not (folder / (r["split"] + sub) / r["name"]).is_file()]
    if missing:
        raise DataError(f"cached synthetic set {folder} is incomplete (missing {', '.join(missing)}); "
                        f"delete the folder to rebuild it")
    return manifest


def ensure_dataset(cfg: SyntheticConfig) -> Path:
    """Build the embedded set for ``cfg`` unless it is cached; return its root (RemDiNet layout)."""
    source_dir = skimage_data_dir()
    final = dataset_dir(cfg)
    if (final / "manifest.json").is_file():
        _check_complete(final)
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    manifest = _build(cfg, tmp, source_dir)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    try:
        os.rename(tmp, final)
    except OSError:
        # another process renamed its complete copy into place first; anything else is re-raised
        if not (final / "manifest.json").is_file():
            raise
        remove_inside(tmp, final.parent)
    s = _check_complete(final)["summary"]
    _log.info(f"data: built the embedded synthetic set at {final}: {s['count']} pairs "
              f"({s['train']} train, {s['val']} val) of {s['size']}x{s['size']}, "
              f"mean input PSNR {s['mean_input_psnr']:.2f} dB")
    return final


def dataset_stats(root: str | Path) -> dict:
    """Count, image size(s) and mean input PSNR of a RemDiNet-layout set, measured from its files."""
    root = Path(root)
    values, sizes, per_split = [], set(), {}
    for split in ("train", "val", "test"):
        low_dir, gt_dir = root / f"{split}_data", root / f"{split}_gt"
        if not low_dir.is_dir():
            continue
        index = gt_index(list_files(gt_dir))
        lows = list_files(low_dir)
        per_split[split] = len(lows)
        for low_path in lows:
            if low_path.stem not in index:
                raise DataError(f"{low_path}: no ground truth with this stem in {gt_dir}")
            low, gt = read_image(low_path), read_image(index[low_path.stem])
            sizes.add(low.shape[:2])
            pair = [torch.from_numpy(x).permute(2, 0, 1)[None] for x in (low, gt)]
            values.append(float(psnr(*pair)[0]))
    if not values:
        raise DataError(f"{root}: no train_data/val_data/test_data images found")
    return {"count": len(values), **per_split,
            "size": sorted(sizes)[0] if len(sizes) == 1 else sorted(sizes),
            "mean_input_psnr": float(np.mean(values))}
