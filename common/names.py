"""Names that become parts of paths (level keys, run names, dataset names): letters, digits,
'_' and '-', at most 64, starting with a letter or digit. So no '..', no separator, no dotfile."""

from __future__ import annotations

import re

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def is_safe_name(name: str) -> bool:
    return isinstance(name, str) and bool(SAFE_NAME.match(name))
