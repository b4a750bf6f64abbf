"""``remdi-exp config``: a run's resolved config as the TOML file ``train --config`` reads, and
the table of every key (type, allowed values, default, doc) from the config schema."""
from __future__ import annotations

import json
from typing import Any

from rich.markup import escape
from rich.table import Table

from remdinet.config import key_specs
from remdinet.resolve import resolve


def resolved_toml(overrides: dict[str, Any]) -> str:
    """Every key of the config that ``overrides`` resolve to: fed back as ``--config`` (or a
    preset) it resolves to the same config, whatever the fix profile."""
    return resolve(overrides).to_toml()


def keys_table(section: str | None = None) -> Table:
    out = Table(title=escape(f"[{section}] keys") if section else "Config keys", title_justify="left",
                caption="Defaults are the post-fix values; a switched-off fix sets its pre-fix "
                        "values (see `config show --profile pre_fix`).", caption_justify="left")
    out.add_column("key", style="bold cyan", no_wrap=True)
    out.add_column("type", no_wrap=True)
    out.add_column("allowed")
    out.add_column("default")
    out.add_column("doc")
    for spec in key_specs(section):
        # JSON spells every default as TOML does: true, "auto", ["a", "b"]
        out.add_row(*map(escape, (spec.key, spec.type, spec.allowed, json.dumps(spec.default),
                                  spec.doc)))
    return out
