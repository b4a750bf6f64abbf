"""Named TOML files (presets in ``experiments/``, study specs in ``studies/``) and run overrides.

A name is looked up in ``<cwd>/<kind>/`` first (a project checkout run from its root, or a user's
own folder), then in the shipped folder of that kind (:func:`shipped_dir`); a path to an existing
``.toml`` file is used as is. A miss suggests the closest name and lists every name that was found.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from remdinet.config import ConfigError, coerce, did_you_mean, parse_set_args, read_toml_overrides

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# where a wheel carries the top-level experiments/ and studies/ (setup.py copies them at build time)
BUNDLED = Path(__file__).resolve().parent / "bundled"
_WHAT = {"experiments": "preset", "studies": "study"}


def shipped_dir(kind: str) -> Path:
    """The installed copy of ``<kind>/`` in a wheel; in a checkout (or an editable install of
    one) the top-level folder itself, the one source of truth."""
    bundled = BUNDLED / kind
    return bundled if bundled.is_dir() else PROJECT_ROOT / kind


def search_dirs(kind: str) -> list[Path]:
    dirs: list[Path] = []
    for d in (Path.cwd() / kind, shipped_dir(kind)):
        if d.resolve() not in [x.resolve() for x in dirs]:
            dirs.append(d)
    return dirs


def available(kind: str) -> list[str]:
    names: set[str] = set()
    for d in search_dirs(kind):
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def find_toml(kind: str, name: str) -> Path:
    """Path of ``<kind>/<name>.toml`` (or ``name`` itself when it is a .toml file)."""
    direct = Path(name)
    if direct.suffix == ".toml":
        if direct.is_file():
            return direct
        raise ConfigError(f"{_WHAT[kind]} file not found: {direct}")
    for d in search_dirs(kind):
        path = d / f"{name}.toml"
        if path.is_file():
            return path
    where = ", ".join(str(d) for d in search_dirs(kind))
    names = available(kind)
    raise ConfigError(f"unknown {_WHAT[kind]} {name!r}{did_you_mean(name, names) or ';'} "
                      f"available: {', '.join(names) or 'none'} (searched {where})")


def load_preset(name: str) -> dict[str, Any]:
    """The flat overrides of preset ``name`` (every key checked against the config schema)."""
    return read_toml_overrides(find_toml("experiments", name))


def run_overrides(preset: str | None = None, config_file: str | Path | None = None,
                  set_items: Iterable[str] = (), data: str | Path | None = None,
                  device: str | None = None,
                  fixes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge a run's explicit overrides; later sources win.

    Order: preset, ``--config`` file, ``--data`` (data.root), ``--device`` (training.device),
    ``fixes`` (``--profile``/``--disable-fix``, see ``doctor.fix_overrides``), then ``--set``
    items, so a ``--set`` always has the last word.
    """
    out: dict[str, Any] = {}
    if preset:
        out.update(load_preset(preset))
    if config_file:
        out.update(read_toml_overrides(config_file))
    if data is not None:
        out["data.root"] = coerce("data.root", str(Path(data).resolve()))
    if device is not None:
        out["training.device"] = coerce("training.device", device)
    out.update(fixes or {})
    out.update(parse_set_args(list(set_items)))
    return out


def leading_comment(path: Path) -> str:
    """The first sentence of a TOML file's opening comment (how a preset describes itself)."""
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.lstrip("#").strip()
        if not line.startswith("#") or not text and words:
            break
        words.append(text)
    return re.split(r"(?<=\.)\s", " ".join(w for w in words if w), maxsplit=1)[0]
