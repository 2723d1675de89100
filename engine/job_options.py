"""What the jobs that run a command with its own options (extract, speculate) share: options
stored in a queue job and read back, given back as the command's arguments, and parsed from
`queue add --extract/--speculate ARGS` with one-line errors. Torch-free."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any, TypeVar

from common.errors import UserInputError

Options = TypeVar("Options")


def from_stored(cls: type[Options], data: Any, paths: tuple[str, ...], flag: str) -> Options:
    """A queue job's stored options as `cls`; UserInputError when a path in `paths` is missing
    or anything else is wrong."""
    known = {f.name for f in fields(cls)}
    try:
        options = cls(**{k: v for k, v in data.items() if k in known})
    except (AttributeError, TypeError):
        options = None
    if options is None or not all(isinstance(getattr(options, k), str) for k in paths):
        raise UserInputError(f"the job's {flag[2:]} options are incomplete; queue it again with `queue add {flag}`")
    return options


def as_argv(options: Any, defaults: Any, leading: tuple[str, ...], positional: str,
            always: tuple[str, ...] = ()) -> list[str]:
    """The command's arguments that give `options` back: the `leading` flags first, every other
    field that differs from `defaults` (or is in `always`), then `-- POSITIONAL`."""
    argv = [item for name in (*leading, *always) for item in (f"--{name}", str(getattr(options, name)))]
    for f in fields(options):
        value = getattr(options, f.name)
        if f.name in (*leading, *always, positional) or value == getattr(defaults, f.name):
            continue
        argv += [f"--{f.name}"] if isinstance(value, bool) else [f"--{f.name}", str(value)]
    return argv + ["--", getattr(options, positional)]


class QueuedParser(argparse.ArgumentParser):
    """`queue add --FLAG ARGS`: the command's own flags; an error is one line (exit 2 through the
    CLI), not argparse's usage dump."""

    def __init__(self, flag: str, command: str) -> None:
        super().__init__(prog=f"adapter-engine queue add {flag}", add_help=False)
        self.flag, self.command = flag, command

    def error(self, message: str):
        raise UserInputError(f"{self.flag}: {message}; see `adapter-engine {self.command} --help`")
