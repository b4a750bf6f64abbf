"""The Typer classes behind one grammar for every ``remdi-exp`` command (Typer's documented
``cls=`` hooks; ``cli.py`` builds its apps with :class:`App`).

* Global options (the root callback's: ``--device``, ``--quiet``, ...) are accepted after any
  subcommand as well, meaning the same: each subcommand gets a copy of each (under "Global
  options" in its ``--help``) whose value, when given, goes to the object the root callback made,
  through ``ctx.obj.update(name, value)``. Given both before and after, the later one wins.
* Flags render as flags in ``--help``: Typer's rich help prints a type for every option, ``<bool>``
  for a flag (``--help`` included); a flag's metavar is blanked, which leaves that column empty.
"""
from __future__ import annotations

import copy
from typing import Any, Iterator

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

GLOBAL_PANEL = "Global options"


class _FlagsAsFlags:
    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
                param.metavar = ""
        return params


class Command(_FlagsAsFlags, TyperCommand):
    pass


class Group(_FlagsAsFlags, TyperGroup):
    pass


class RootGroup(Group):
    """The top-level group: hands its own options down to every subcommand."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        shared = [p for p in self.params
                  if isinstance(p, TyperOption) and p.expose_value and not p.is_eager]
        for command in _descendants(self):
            taken = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
            command.params.extend(_after_command(p) for p in shared if not taken & set(p.opts))


def _descendants(group: TyperGroup) -> Iterator[Any]:
    for command in group.commands.values():
        yield command
        if isinstance(command, TyperGroup):
            yield from _descendants(command)


def _after_command(option: TyperOption) -> TyperOption:
    # the root's defaults (None, False) mean "not given", so a copy keeps them
    after = copy.copy(option)
    after.expose_value = False
    after.callback = _given
    after.rich_help_panel = GLOBAL_PANEL
    return after


def _given(ctx: typer.Context, param: TyperOption, value: Any) -> Any:
    if value is not None and value is not False and not ctx.resilient_parsing:
        ctx.obj.update(param.name, value)
    return value


class App(typer.Typer):
    """``typer.Typer`` whose groups and commands use the classes above."""

    def __init__(self, *args: Any, cls: type = Group, **kwargs: Any) -> None:
        super().__init__(*args, cls=cls, **kwargs)

    def command(self, *args: Any, cls: type = Command, **kwargs: Any):
        return super().command(*args, cls=cls, **kwargs)
