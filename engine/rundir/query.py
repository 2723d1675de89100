"""Filter expressions over leaderboard rows, for the app's `/` and `adapter-engine runs --where`.

    speedup>1.2 level=L4 state=done      every term must hold
    tag=best label~ablation  -loss       `=` equal (any case), `!=`, `~` contains, `>` `>=` `<` `<=`
    L4 attention                          a bare word: contained in the run, level, state, label,
                                          tags, note or error

Numbers compare as numbers; a row without the value (no eval.json yet) never matches a
comparison. A bad expression raises FilterError with one line saying what to write instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

# field name as typed -> RunSummary attribute (aliases: the leaderboard's headers, shortened)
FIELDS: dict[str, str] = {
    "run": "run", "name": "run", "level": "level", "state": "state", "params": "params",
    "epoch": "epochs_done", "epochs": "epochs_done",
    "val": "best_val_loss", "loss": "best_val_loss", "best_val": "best_val_loss", "best_val_loss": "best_val_loss",
    "cos": "cos_sim", "cos_sim": "cos_sim",
    "acc": "accept_90", "acc90": "accept_90", "accept_90": "accept_90",
    "cons": "consecutive_90", "consecutive_90": "consecutive_90",
    "prefix": "prefix_mean_90", "etok": "expected_tokens", "expected_tokens": "expected_tokens",
    "speedup": "speedup", "estimate": "speedup", "speedup_measured": "speedup_measured",
    "measured": "speedup_measured", "tau": "tau", "time": "duration_s", "duration_s": "duration_s",
    "label": "label", "tag": "tags", "tags": "tags", "note": "note", "error": "error", "archived": "archived",
}
NAMES = ("run", "level", "state", "params", "epoch", "val", "cos", "acc", "cons", "prefix", "etok", "speedup",
         "measured", "tau", "time", "label", "tag", "note", "error", "archived")
TEXT_ATTRS = ("run", "level", "state", "label", "note", "error")
OPERATORS = (">=", "<=", "!=", ">", "<", "=", "~")
TERM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(>=|<=|!=|>|<|=|~)(.*)$")
COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b,
}


class FilterError(ValueError):
    """A filter expression that cannot be read; the message says how to fix it."""


@dataclass(frozen=True)
class Term:
    attr: str | None  # None: a bare word
    op: str
    value: str

    def matches(self, row: Any) -> bool:
        if self.attr is None:
            words = [str(getattr(row, a, "") or "") for a in TEXT_ATTRS] + list(getattr(row, "tags", []) or [])
            return self.value in " ".join(words).lower()
        actual = getattr(row, self.attr, None)
        if self.attr == "tags":
            tags = {t.lower() for t in actual or []}
            if self.op == "~":
                return any(self.value in t for t in tags)
            return (self.value in tags) == (self.op == "=")
        if self.attr == "archived":
            return bool(actual) == (self.value in ("1", "true", "yes")) if self.op == "=" else \
                bool(actual) != (self.value in ("1", "true", "yes"))
        if isinstance(actual, (int, float)) and not isinstance(actual, bool):
            return COMPARE[self.op](float(actual), float(self.value)) if self.op != "~" else \
                self.value in str(actual)
        if actual is None:
            return self.op == "!="
        text = str(actual).lower()
        if self.op == "~":
            return self.value in text
        if self.op in ("=", "!="):
            return (text == self.value) == (self.op == "=")
        return False


@dataclass(frozen=True)
class Filter:
    terms: tuple[Term, ...] = ()

    def matches(self, row: Any) -> bool:
        return all(term.matches(row) for term in self.terms)

    def __bool__(self) -> bool:
        return bool(self.terms)


NUMERIC = {"params", "epochs_done", "best_val_loss", "cos_sim", "accept_90", "consecutive_90", "prefix_mean_90",
           "expected_tokens", "speedup", "speedup_measured", "tau", "duration_s"}


def parse_filter(text: str) -> Filter:
    terms = []
    for word in text.split():
        match = TERM.match(word)
        if not match:
            if any(op in word for op in OPERATORS):
                raise FilterError(f"{word!r}: write FIELD OP VALUE, e.g. speedup>1.2 or level=L4")
            terms.append(Term(None, "~", word.lower()))
            continue
        name, op, value = match.groups()
        attr = FIELDS.get(name.lower())
        if attr is None:
            raise FilterError(f"unknown field {name!r} (one of: {', '.join(NAMES)})")
        if not value:
            raise FilterError(f"{word!r}: nothing after {op}")
        if attr in NUMERIC and op != "~":
            try:
                float(value)
            except ValueError:
                raise FilterError(f"{word!r}: {name} is a number") from None
        elif op in (">", ">=", "<", "<="):
            raise FilterError(f"{word!r}: {name} is text; use =, != or ~")
        terms.append(Term(attr, op, value.lower()))
    return Filter(tuple(terms))
