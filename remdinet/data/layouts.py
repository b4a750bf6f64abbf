"""Dataset folder layouts and their detection.

=================== ==================================================================
layout              folders (low-light, ground truth) per split
=================== ==================================================================
``lol_v1``          train ``our485/{low,high}``; val and test ``eval15/{low,high}``
``lol_v2_real``     train ``Train/{Low,Normal}``; val and test ``Test/{Low,Normal}``, below
                    ``Real_captured/`` (the root may be ``Real_captured/`` itself)
``lol_v2_synthetic`` the same below ``Synthetic/``
``remdinet``        ``train_data``/``train_gt``; optional ``val_data``/``val_gt``,
                    ``test_data``/``test_gt``
=================== ==================================================================

Folder names are matched case-insensitively (LOL-v2 copies differ in case). A LOL-v2 root holding both
``Real_captured/`` and ``Synthetic/`` is ambiguous under ``auto``; the layout name chooses then. A
folder named ``Train``/``Test`` directly under the root is taken as LOL-v2 only when the root's name
says which one (``real``/``synthetic``), otherwise the layout must be given.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .io import DataError

LAYOUTS = ("lol_v1", "lol_v2_real", "lol_v2_synthetic", "remdinet")

_LOL_V2_DIRS = {"lol_v2_real": "Real_captured", "lol_v2_synthetic": "Synthetic"}

_LOOKED_FOR = ("remdinet: train_data/ (with train_gt/)",
               "lol_v1: our485/{low,high} and eval15/{low,high}",
               "lol_v2_real: Real_captured/Train/{Low,Normal} or Train/{Low,Normal} in a folder "
               "named like Real_captured",
               "lol_v2_synthetic: Synthetic/Train/{Low,Normal} or Train/{Low,Normal} in a folder "
               "named like Synthetic")


@dataclass(frozen=True)
class SplitDirs:
    low: Path
    gt: Path | None  # None: no ground-truth folder exists for this split


@dataclass(frozen=True)
class Layout:
    name: str
    root: Path  # the folder the split paths hang from (e.g. Real_captured/ for LOL-v2)
    train: SplitDirs
    val: SplitDirs | None
    test: SplitDirs | None


def _child(folder: Path, name: str) -> Path | None:
    """The sub-folder of ``folder`` whose name equals ``name`` case-insensitively."""
    if not folder.is_dir():
        return None
    hits = [p for p in folder.iterdir() if p.is_dir() and p.name.lower() == name.lower()]
    if len(hits) > 1:
        raise DataError(f"{folder}: several folders match {name!r} when case is ignored: "
                        f"{', '.join(sorted(p.name for p in hits))}")
    return hits[0] if hits else None


def _split(base: Path | None, low: str, gt: str) -> SplitDirs | None:
    low_dir = _child(base, low) if base is not None else None
    if low_dir is None:
        return None
    return SplitDirs(low_dir, _child(base, gt))


def _lol_v2_base(root: Path, name: str) -> Path:
    sub = _child(root, _LOL_V2_DIRS[name])
    return sub if sub is not None else root


def _candidates(root: Path) -> list[str]:
    found = []
    if _child(root, "train_data") is not None:
        found.append("remdinet")
    if _child(root, "our485") is not None:
        found.append("lol_v1")
    found += [n for n, d in _LOL_V2_DIRS.items() if _child(root, d) is not None]
    if _child(root, "Train") is not None and _child(_child(root, "Train"), "Low") is not None:
        lowered = root.name.lower()
        if "synthetic" in lowered:
            found.append("lol_v2_synthetic")
        elif "real" in lowered:
            found.append("lol_v2_real")
        else:
            raise DataError(f"{root}: Train/ found but the folder name does not say whether it is "
                            f"LOL-v2 Real_captured or Synthetic; set data.layout to lol_v2_real or "
                            f"lol_v2_synthetic")
    return found


def detect_layout(root: str | Path) -> str:
    """Name of the layout of ``root``; raises listing what was looked for when none or several match."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root is not a folder: {root}")
    found = _candidates(root)
    if not found:
        raise DataError(f"{root}: no known dataset layout found; looked for: " + "; ".join(_LOOKED_FOR))
    if len(found) > 1:
        raise DataError(f"{root}: ambiguous layout, matches {', '.join(found)}; set data.layout")
    return found[0]


def resolve_layout(root: str | Path, layout: str = "auto") -> Layout:
    """Split folders of ``root`` for ``layout`` (``auto`` detects it)."""
    root = Path(root)
    name = detect_layout(root) if layout == "auto" else layout
    if name not in LAYOUTS:
        raise DataError(f"unknown layout {name!r}; valid: auto, {', '.join(LAYOUTS)}")
    if not root.is_dir():
        raise DataError(f"data root is not a folder: {root}")
    if name == "remdinet":
        base, splits = root, (("train_data", "train_gt"), ("val_data", "val_gt"),
                              ("test_data", "test_gt"))
        dirs = [_split(base, low, gt) for low, gt in splits]
    elif name == "lol_v1":
        base = root
        train, test = _split(_child(root, "our485"), "low", "high"), _split(_child(root, "eval15"),
                                                                            "low", "high")
        dirs = [train, test, test]
    else:
        base = _lol_v2_base(root, name)
        train = _split(_child(base, "Train"), "Low", "Normal")
        test = _split(_child(base, "Test"), "Low", "Normal")
        dirs = [train, test, test]
    if dirs[0] is None:
        raise DataError(f"{root}: layout {name} needs its training folder; looked for: "
                        + next(s for s in _LOOKED_FOR if s.startswith(name + ":")))
    return Layout(name, base, dirs[0], dirs[1], dirs[2])
