"""Named TOML files (presets in ``experiments/``, study specs in ``studies/``) and run overrides.

A name is looked up in ``<cwd>/<kind>/`` first (a project checkout run from its root, or a user's
own folder), then in the folder of that kind shipped next to the package; a path to an existing
``.toml`` file is used as is. A miss lists every name that was found, so a typo is visible at once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from remdinet.config import ConfigError, coerce, parse_set_args, read_toml_overrides

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_WHAT = {"experiments": "preset", "studies": "study"}


def search_dirs(kind: str) -> list[Path]:
    dirs: list[Path] = []
    for d in (Path.cwd() / kind, PROJECT_ROOT / kind):
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
    names = ", ".join(available(kind)) or "none"
    raise ConfigError(f"unknown {_WHAT[kind]} {name!r}; available: {names} (searched {where})")


def load_preset(name: str) -> dict[str, Any]:
    """The flat overrides of preset ``name`` (every key checked against the config schema)."""
    return read_toml_overrides(find_toml("experiments", name))


def run_overrides(preset: str | None = None, config_file: str | Path | None = None,
                  set_items: Iterable[str] = (), data: str | Path | None = None,
                  device: str | None = None) -> dict[str, Any]:
    """Merge a run's explicit overrides; later sources win.

    Order: preset, ``--config`` file, ``--data`` (data.root), ``--device`` (training.device), then
    ``--set`` items, so a ``--set`` always has the last word.
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
    out.update(parse_set_args(list(set_items)))
    return out
