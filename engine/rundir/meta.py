"""meta.json: what the user says about a run (a label, tags, a note) and whether it is archived.

Only `adapter-engine runs label|tag|note|archive|unarchive` and the app write it, never the
trainer, so editing it never races a training run. An archived run stays where it is: it is
hidden from the leaderboard and from `runs` until asked for, and unarchiving brings it back.
Writers take an exclusive flock on the run directory around read-modify-write, so the app and
the command line editing at once lose neither's change.
"""

from __future__ import annotations

import fcntl
import os
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from common.errors import UserInputError
from common.fileio import ReadError, read_json, write_json
from common.text import control_character
from engine.rundir.layout import META, is_run_dir, linked_run_problem
from engine.rundir.states import now_iso

TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}$")
MAX_LABEL, MAX_NOTE = 80, 10_000


@dataclass
class RunMeta:
    label: str | None = None
    tags: list[str] = field(default_factory=list)
    note: str = ""
    archived: bool = False
    archived_at: str | None = None
    updated_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_meta(data: Any) -> RunMeta:
    """A RunMeta from meta.json's content, keeping only well-typed values (a reader never raises)."""
    if not isinstance(data, dict):
        return RunMeta()
    tags = data.get("tags")
    return RunMeta(
        label=data["label"] if isinstance(data.get("label"), str) and data["label"] else None,
        tags=[t for t in tags if isinstance(t, str) and TAG.match(t)] if isinstance(tags, list) else [],
        note=data["note"] if isinstance(data.get("note"), str) else "",
        archived=data.get("archived") is True,
        archived_at=data["archived_at"] if isinstance(data.get("archived_at"), str) else None,
        updated_at=data["updated_at"] if isinstance(data.get("updated_at"), str) else None,
    )


def read_meta(run_dir: str | os.PathLike) -> tuple[RunMeta, str | None]:
    """(the run's meta, None), or (an empty meta, why meta.json could not be read)."""
    try:
        return parse_meta(read_json(Path(run_dir) / META, missing_ok=True)), None
    except ReadError as exc:
        return RunMeta(), str(exc)


def tag_changes(words: list[str]) -> tuple[list[str], list[str]]:
    """`+best -draft ablation` -> (added ["best", "ablation"], removed ["draft"]), every tag checked."""
    added, removed = [], []
    for word in words:
        name = word[1:] if word[:1] in "+-" else word
        if not TAG.match(name):
            raise UserInputError(f"tag {name!r}: letters, digits and _ . : - only, up to 32 characters, "
                                 "starting with a letter or digit")
        (removed if word.startswith("-") else added).append(name)
    return added, removed


@contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update_meta(run_dir: str | os.PathLike, *, label: str | None = None, clear_label: bool = False,
                add_tags: list[str] = (), remove_tags: list[str] = (), note: str | None = None,
                archived: bool | None = None) -> RunMeta:
    """Change a run's meta.json (created if missing) and return the result. Everything is
    checked before the file is touched; a meta.json that cannot be read is refused, not
    overwritten (it may hold the user's notes)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not is_run_dir(str(run_dir)):
        raise UserInputError(f"{run_dir} is not a run directory (no config.json, history.json or status.json)")
    linked = linked_run_problem(run_dir)
    if linked:
        raise UserInputError(linked)
    if label is not None and (not label.strip() or len(label) > MAX_LABEL or "\n" in label):
        raise UserInputError(f"a label is one line of 1 to {MAX_LABEL} characters")
    for what, text, multiline in (("label", label, False), ("note", note, True)):
        bad = control_character(text, multiline=multiline) if text is not None else None
        if bad:  # it would reach every terminal that shows the run
            raise UserInputError(f"the {what} holds the control character {bad}; write it without escape sequences")
    if note is not None and len(note) > MAX_NOTE:
        raise UserInputError(f"a note holds at most {MAX_NOTE:,} characters")
    tag_changes([*add_tags, *(f"-{t}" for t in remove_tags)])
    with _locked(run_dir):
        try:
            current = parse_meta(read_json(run_dir / META, missing_ok=True))
        except ReadError as exc:
            raise UserInputError(f"{exc}; fix or remove it first") from None
        if label is not None:
            current.label = label.strip()
        if clear_label:
            current.label = None
        current.tags = [t for t in dict.fromkeys([*current.tags, *add_tags]) if t not in remove_tags]
        if note is not None:
            current.note = note
        if archived is not None and archived != current.archived:
            current.archived = archived
            current.archived_at = now_iso() if archived else None
        current.updated_at = now_iso()
        write_json(run_dir / META, current.as_dict())
    return current
