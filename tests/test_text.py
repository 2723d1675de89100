"""Counts read right and user-written strings never reach a terminal as escape sequences."""

from __future__ import annotations

from hypothesis import given, strategies as st

from common.text import control_character, plural, printable


def test_plural():
    assert [plural(n, "run") for n in (0, 1, 2, 1024)] == ["0 runs", "1 run", "2 runs", "1,024 runs"]
    assert plural(1, "was", "were") == "1 was" and plural(3, "was", "were") == "3 were"


def test_escapes_are_written_out():
    assert printable("a\x1b[2Jb\x9b1m\x7f") == "a\\x1b[2Jb\\x9b1m\\x7f"
    assert printable("one\ntwo\tthree") == "one\\ntwo\\tthree"
    assert printable("one\ntwo\tthree", multiline=True) == "one\ntwo\tthree"
    assert printable("naïve ünïcode →") == "naïve ünïcode →"
    assert control_character("ok\x07") == "\\x07" and control_character("ok") is None
    assert control_character("a\nb", multiline=True) is None and control_character("a\nb") == "\\n"


@given(st.text())
def test_nothing_printable_leaves_a_control_character(text):
    shown = printable(text)
    assert control_character(shown) is None
    assert control_character(printable(text, multiline=True), multiline=True) is None
