"""`?`: every key binding, grouped by where it works, with its id (for remapping)."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

INTRO = """[b]adapter-tui[/b] — queue adapter trainings and watch them live.
Training runs in a detached worker: quitting never stops it; reopen to see everything again.
ctrl+p opens the command palette. Mouse works too."""


def bindings_table(groups: list[tuple[str, list]]) -> Table:
    table = Table(expand=True, show_edge=False, pad_edge=False)
    table.add_column("where", style="dim", no_wrap=True)
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("action")
    table.add_column("id", style="dim", no_wrap=True)
    for where, bindings in groups:
        for b in bindings:
            if isinstance(b, Binding):
                keys = ", ".join(b.key_display or k for k in b.key.split(","))
                table.add_row(where, keys, b.tooltip or b.description, b.id or "")
    return table


class HelpScreen(ModalScreen):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; max-width: 110; height: 90%; border: thick $accent;
                                  background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help.close")]

    def __init__(self, groups: list[tuple[str, list]]) -> None:
        super().__init__()
        self.groups = groups

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(INTRO)
            yield Static(bindings_table(self.groups), id="help-table")
