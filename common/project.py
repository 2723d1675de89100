"""Where a project is: the nearest directory, from the working directory up, that holds
adapters.toml (as git finds .git). Its runs directory and its registry are found from there, so
a command run from a subdirectory, or from anywhere inside the project, sees the same queue."""

from __future__ import annotations

from pathlib import Path

PROJECT_FILE = "adapters.toml"


def find_project(start: str | Path | None = None) -> Path | None:
    """The nearest ancestor of `start` (default: the working directory), itself included, that
    holds a regular adapters.toml; None when there is none."""
    here = Path(start if start is not None else Path.cwd()).absolute()
    for directory in (here, *here.parents):
        if (directory / PROJECT_FILE).is_file():
            return directory
    return None
