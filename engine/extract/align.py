"""Which positions of two tokenizations of the same text correspond: those where both tokenizers
end a token at the same character. Identical tokenizers align every token; different ones align
at shared word (or sub-word) boundaries. Special tokens (offsets (0, 0)) never align. Torch-free."""

from __future__ import annotations

Offsets = list[tuple[int, int]]


def token_ends(offsets: Offsets) -> dict[int, int]:
    """{end character: token index} of the tokens that cover text. Where several tokens end at one
    character (bytes of one character), the last is kept: its state has seen the whole character."""
    return {end: i for i, (start, end) in enumerate(offsets) if end > start}


def align(drafter: Offsets, verifier: Offsets) -> list[tuple[int, int]]:
    """(drafter index, verifier index) pairs, in text order."""
    a, b = token_ends(drafter), token_ends(verifier)
    return [(a[end], b[end]) for end in sorted(a.keys() & b.keys())]

