"""Pairing low-light images with their ground truth (§6.2 of the reference).

* ``strict``: the GT stem equals the image stem (the extension may differ).
* ``flexible``, tried in order: (1) exact stem; (2) strip ``_low``, ``_lowlight``, ``_dark``,
  ``_input``, ``_noisy`` in that order whenever the current base ends with one (stripping accumulates),
  testing for an exact match after each strip; (3) the base plus ``_high``, ``_normal``, ``_gt``,
  ``_clean``, ``_target``; (4) the leading digits of the base.
* ``none``: no ground truth (unpaired training).

Deviation (fixes §8.1.14): the reference's step 4 returns the first GT stem that merely *starts with*
the image's leading digits, so ``1`` can pair with ``10``. Here a GT qualifies only when its own leading
digits are *equal* to the image's (as strings, so ``01`` and ``1`` differ), and it is used only when
exactly one GT qualifies; several candidates are reported as an ambiguity, never resolved by order.

The reference lets the last of several GT files with one stem win silently; here that is an error.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .io import DataError

PAIRING_MODES = ("strict", "flexible", "none")
INPUT_SUFFIXES = ("_low", "_lowlight", "_dark", "_input", "_noisy")
GT_SUFFIXES = ("_high", "_normal", "_gt", "_clean", "_target")
TESTER_STRIP_SUFFIXES = ("_low", "_lowlight", "_dark")

_LEADING_DIGITS = re.compile(r"^\d+")


@dataclass
class PairingResult:
    pairs: list[tuple[Path, Path | None]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (image path, reason)
    unused_gt: list[Path] = field(default_factory=list)


def gt_index(gt_files: list[Path]) -> dict[str, Path]:
    """Map GT stem -> path; several files with one stem are an error naming them."""
    index: dict[str, Path] = {}
    clashes: dict[str, list[Path]] = {}
    for path in gt_files:
        if path.stem in index:
            clashes.setdefault(path.stem, [index[path.stem]]).append(path)
        index[path.stem] = path
    if clashes:
        lines = [", ".join(str(p) for p in paths) for paths in clashes.values()]
        raise DataError("several ground-truth files share a stem, so the pairing is ambiguous: "
                        + "; ".join(lines))
    return index


def _leading_digits(stem: str) -> str:
    match = _LEADING_DIGITS.match(stem)
    return match.group(0) if match else ""


def match_flexible(stem: str, index: dict[str, Path]) -> tuple[Path | None, str]:
    """GT path for ``stem`` under the flexible rules, and how it was found (or why not)."""
    if stem in index:
        return index[stem], "exact"
    base = stem
    for suffix in INPUT_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            if base in index:
                return index[base], f"stripped to {base!r}"
    for suffix in GT_SUFFIXES:
        if base + suffix in index:
            return index[base + suffix], f"suffix {suffix!r}"
    digits = _leading_digits(base)
    if not digits:
        return None, ("no ground truth found (tried the exact stem, input-suffix stripping and the "
                      "GT suffixes; the name has no leading digits)")
    hits = [p for s, p in index.items() if _leading_digits(s) == digits]
    if len(hits) == 1:
        return hits[0], f"leading digits {digits!r}"
    if not hits:
        return None, (f"no ground truth found (tried the exact stem, input-suffix stripping, the GT "
                      f"suffixes and leading digits {digits!r})")
    return None, (f"ambiguous ground truth: leading digits {digits!r} match "
                  + ", ".join(sorted(p.name for p in hits)))


def pair_files(images: list[Path], gt_files: list[Path] | None, mode: str) -> PairingResult:
    """Pair each image with a GT file; images that cannot be paired are listed in ``problems``."""
    if mode not in PAIRING_MODES:
        raise DataError(f"unknown pairing mode {mode!r}; valid: {', '.join(PAIRING_MODES)}")
    result = PairingResult()
    if mode == "none":
        result.pairs = [(p, None) for p in images]
        return result
    if gt_files is None:
        raise DataError(f"pairing mode {mode!r} needs a ground-truth folder, and there is none")
    index = gt_index(gt_files)
    used: set[Path] = set()
    for image in images:
        if mode == "strict":
            gt = index.get(image.stem)
            why = f"no ground truth with stem {image.stem!r} (strict pairing)"
        else:
            gt, why = match_flexible(image.stem, index)
        if gt is None:
            result.problems.append((str(image), why))
            continue
        used.add(gt)  # one GT may serve several exposures of a scene
        result.pairs.append((image, gt))
    result.unused_gt = [p for p in gt_files if p not in used]
    return result


def gt_for_test_protocol(image: str | Path, gt_dir: str | Path) -> Path | None:
    """GT of ``image`` by the test script's name patterns (§7.2), first existing file wins.

    Tried: the same name; stem + ``.png`` / ``.jpg``; the stem without a trailing ``_low``,
    ``_lowlight`` or ``_dark`` + ``.png``; stem + ``_high.png``; stem + ``_gt.png``.
    """
    image, gt_dir = Path(image), Path(gt_dir)
    stem = image.stem
    names = [image.name, stem + ".png", stem + ".jpg"]
    names += [stem[: -len(s)] + ".png" for s in TESTER_STRIP_SUFFIXES if stem.endswith(s)]
    names += [stem + "_high.png", stem + "_gt.png"]
    for name in names:
        candidate = gt_dir / name
        if candidate.is_file():
            return candidate
    return None
