"""Checkpoint files: the full training state, written atomically, and model loading for evaluation.

A checkpoint is one ``torch.save`` dict (loadable with ``weights_only=True``)::

    format, version      identification
    config               the resolved config as a flat {"section.key": value} dict
    model                model state_dict (of the uncompiled module)
    optimizer            AdamW state_dict
    scheduler            {"type": "plateau" | "cosine", "state": state_dict}
    scaler               GradScaler state_dict, or None when no fp16 scaling is used
    trainer              stage, epoch, switch epoch, loss mix, one-shot unfreeze flag, mask
                         trainability, old-criterion stage, criteria weights, mask forward_calls,
                         skipped batches
    selection            best scores and patience (remdinet.training.selection.Selection)
    history              list of per-epoch metric dicts
    rng                  python, numpy, torch and CUDA generator states

Everything the reference did not save (§5.8, §8.1.19) is here, so ``Trainer.fit(resume=...)``
continues exactly.
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Config
from .model import build_model
from .paths import remove_inside
from .processes import is_gone, process_label

FORMAT = "remdinet-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "config", "model", "optimizer", "scheduler", "scaler",
                 "trainer", "selection", "history", "rng")
# ``.NAME.tmp-HOST-PID``: the temporary file that save_checkpoint renames into place
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<host>.+)-(?P<pid>\d+)$")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not a remdinet checkpoint; names the file."""


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        if not torch.cuda.is_available():
            raise CheckpointError("checkpoint holds CUDA RNG states but CUDA is not available; "
                                  "resume exactly only on a machine with the same devices")
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    missing = [k for k in REQUIRED_KEYS if k not in payload and k not in ("format", "version")]
    if missing:
        raise CheckpointError(f"{path}: checkpoint payload lacks {', '.join(missing)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(path.parent)
    host, pid = process_label().rsplit(":", 1)
    tmp = path.with_name(f".{path.name}.tmp-{host}-{pid}")
    torch.save({"format": FORMAT, "version": VERSION, **payload}, tmp)
    os.replace(tmp, path)
    return path


def remove_dead_temporaries(folder: Path) -> None:
    """Delete the temporary files in ``folder`` that a process of this host began and never
    renamed because it was killed mid-write (each as large as a checkpoint). Those of live
    processes and of other hosts (a shared folder) are left alone."""
    for entry in folder.iterdir():
        match = _TEMPORARY.match(entry.name)
        if match is None or entry.is_symlink() or not entry.is_file():
            continue
        if not is_gone(f"{match['host']}:{match['pid']}"):
            continue
        try:
            remove_inside(entry, folder)
        except FileNotFoundError:
            pass  # another writer of the folder removed it first


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        # A damaged file fails in whichever of torch's parsers met the damage (zip reader,
        # weights-only unpickler, storage decoder), each with its own exception type; a file
        # whose pickle asks for anything but tensors fails as UnpicklingError. All mean the same
        # to the user: this file is no checkpoint that can be loaded.
        raise CheckpointError(f"{path}: not a loadable checkpoint (truncated, damaged or not "
                              f"written by remdinet): {_load_failure(exc)}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a remdinet checkpoint (format tag missing)")
    if payload["version"] != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload['version']} is not the "
                              f"supported version {VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return payload


def _load_failure(exc: Exception) -> str:
    """The cause of a failed ``torch.load``, in one line. Torch's text for a refused pickle opens
    with advice to load the file with ``weights_only=False``, the one thing never to do with a
    file that fails this way; its cause is the paragraph after that advice."""
    text = str(exc).strip()
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
    if text.startswith("Weights only load failed") and len(paragraphs) > 1:
        return f"refused by the weights-only loader: {paragraphs[1][:200]}"
    if not paragraphs:
        return type(exc).__name__  # EOFError of an empty file says nothing more
    return f"{type(exc).__name__}: {paragraphs[0].split('. ')[0][:200]}"


def config_of(payload: dict[str, Any]) -> Config:
    return Config.from_flat(payload["config"])


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu"):
    """``(model, cfg)`` from a checkpoint: the model in eval mode on ``device``, weights loaded
    strictly (a key mismatch raises, naming the keys)."""
    payload = load_checkpoint(checkpoint)
    cfg = config_of(payload)
    model = build_model(cfg)
    model.load_state_dict(payload["model"], strict=True)
    restore_model_counters(model, payload["trainer"])
    return model.to(device).eval(), cfg


def model_counters(model: torch.nn.Module) -> dict[str, int]:
    """Plain (non-state-dict) counters that change the forward pass; the reference lost them on
    reload (§1.4.12)."""
    return {"mask_forward_calls": int(model.mask_predictor.forward_calls)}


def restore_model_counters(model: torch.nn.Module, trainer_state: dict[str, Any]) -> None:
    model.mask_predictor.forward_calls = int(trainer_state["mask_forward_calls"])
