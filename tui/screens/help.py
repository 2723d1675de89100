"""`?`: every key binding, grouped by where it works, with its id (for remapping)."""

from __future__ import annotations

from rich.table import Table
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

INTRO = """[b]adapter-tui[/b] — queue adapter trainings and watch them live.
Training runs in a detached worker: quitting never stops it; reopen to see everything again.
In a text field keys type: escape leaves it (then 1/2/3 and q work again); F1/F2/F3 switch tabs
and ctrl+q quits from anywhere.
ctrl+p opens the command palette. Mouse works too."""
WIDE = 100  # the ids column (for remapping keys) shows from this width on


def bindings_table(app: App, groups: list[tuple[str, list]], width: int) -> Table:
    table = Table(expand=True, show_edge=False, pad_edge=False)
    table.add_column("where", style="dim", no_wrap=True)
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("action", ratio=1)
    if width >= WIDE:
        table.add_column("id", style="dim", no_wrap=True)
    for where, bindings in groups:
        for b in bindings:
            if isinstance(b, Binding):
                keys = ", ".join(b.key_display or app.get_key_display(Binding(k.strip(), ""))
                                 for k in b.key.split(","))
                table.add_row(where, keys, b.tooltip or b.description, *([b.id or ""] if width >= WIDE else []))
    return table


class HelpScreen(ModalScreen):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 96%; max-width: 120; height: 94%; border: thick $accent;
                                  background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help.close")]

    def __init__(self, app: App, groups: list[tuple[str, list]]) -> None:
        super().__init__()
        self.groups = groups
        self.width = app.size.width

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(INTRO)
            yield Static(bindings_table(self.app, self.groups, self.width), id="help-table")
