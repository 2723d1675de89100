"""Words for people: counts with the right plural, and user-written strings made safe to print.

A label, note, tag, run or dataset name, or a log line is written by someone else; printed raw,
its escape sequences would clear the screen, recolour it or retitle the terminal. Everything the
CLI or the app shows from such a string goes through `printable`. Torch-free."""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, and the C1 controls (U+0080-U+009F: 8-bit CSI and OSC).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 run`, `2 runs`, `1,024 samples`; `many` for irregular words (`1 was`, `2 were`)."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return "\\t" if code == 9 else "\\n" if code == 10 else f"\\x{code:02x}"


def printable(text: object, *, multiline: bool = False) -> str:
    """`text` with every control character written as an escape (`\\x1b`), so a terminal shows
    it instead of obeying it. `multiline` keeps newlines and tabs (a note, a log tail)."""
    return (_CONTROL if multiline else _CONTROL_OR_NEWLINE).sub(_escape, str(text))


def control_character(text: str, *, multiline: bool = False) -> str | None:
    """The first control character of `text`, escaped (for a refusal), or None."""
    found = (_CONTROL if multiline else _CONTROL_OR_NEWLINE).search(text)
    return _escape(found) if found else None


def widths_text(drafter_dim: object, hidden_dim: object) -> str:
    """An adapter's widths as people read them: `4096` when drafter and verifier agree, `2048→4096`
    (drafter → verifier) where they differ; `?` for what a file does not say."""
    hv = hidden_dim if isinstance(hidden_dim, int) and not isinstance(hidden_dim, bool) else None
    hd = drafter_dim if isinstance(drafter_dim, int) and not isinstance(drafter_dim, bool) else hv
    if hv is None:
        return "?"
    return str(hv) if hd == hv else f"{hd}→{hv}"
