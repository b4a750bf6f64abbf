"""What ``remdi-exp presets`` lists: every preset (``experiments/``) and study space
(``studies/``) that a name would find, where it comes from and what it is for."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from .presets import available, find_toml, leading_comment
from .studyspec import spec_description

KINDS = {"experiments": "Presets (--preset NAME)", "studies": "Studies (study run NAME)"}


@dataclass(frozen=True)
class Entry:
    name: str
    path: Path
    local: bool  # found in the working directory's folder, overriding a shipped one
    description: str


def entries(kind: str) -> list[Entry]:
    out = []
    local_dir = (Path.cwd() / kind).resolve()
    for name in available(kind):
        path = find_toml(kind, name)
        text = spec_description(path) if kind == "studies" else ""
        out.append(Entry(name, path, path.resolve().parent == local_dir,
                         text or leading_comment(path)))
    return out


def table(kind: str) -> Table:
    out = Table(title=KINDS[kind], title_justify="left", show_lines=False)
    out.add_column("name", style="bold cyan", no_wrap=True)
    out.add_column("from", no_wrap=True)
    out.add_column("description")
    for entry in entries(kind):
        out.add_row(escape(entry.name), f"./{kind}" if entry.local else "shipped",
                    escape(entry.description))
    return out
