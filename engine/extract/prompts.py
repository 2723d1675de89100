"""The prompt file: JSON lines, each {"text": ...} or {"messages": [{"role", "content"}, ...]}
(rendered with the verifier's chat template), or plain text, one sample a line. Torch-free."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.errors import UserInputError
from common.fileio import open_regular


def read_prompts(path: str | Path) -> list[dict[str, Any]]:
    """Every sample as {"text": str} or {"messages": list}; a bad line is one clear error."""
    path = Path(path)
    try:
        with open_regular(path) as handle:
            content = handle.read().decode("utf-8")
    except FileNotFoundError:
        raise UserInputError(f"--prompts {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"--prompts {path} cannot be read: {exc}") from None
    lines = [(n, line) for n, line in enumerate(content.splitlines(), 1) if line.strip()]
    if not lines:
        raise UserInputError(f"--prompts {path} holds no sample")
    as_json = path.suffix in (".jsonl", ".json") or lines[0][1].lstrip().startswith("{")
    if not as_json:
        return [{"text": line} for _, line in lines]
    samples = []
    for n, line in lines:
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise UserInputError(f"--prompts {path} line {n} is not JSON ({exc.msg}); write one JSON object a line, "
                                 "or plain text with no line starting with '{'") from None
        samples.append(_sample(item, f"--prompts {path} line {n}"))
    return samples


def _sample(item: Any, where: str) -> dict[str, Any]:
    if isinstance(item, dict) and isinstance(item.get("text"), str) and item["text"].strip():
        return {"text": item["text"]}
    if isinstance(item, dict) and isinstance(item.get("messages"), list) and item["messages"]:
        for message in item["messages"]:
            if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                    and isinstance(message.get("content"), str)):
                raise UserInputError(f"{where}: each message needs a string 'role' and 'content'")
        return {"messages": item["messages"]}
    raise UserInputError(f'{where}: expected {{"text": "..."}} or {{"messages": [{{"role": ..., "content": ...}}]}}')
