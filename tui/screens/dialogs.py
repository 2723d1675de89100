"""Small modal dialogs: a yes/no confirmation, a one-line text prompt, and the column chooser.
Each dismisses with its answer (None when cancelled with escape)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, SelectionList, Static
from textual.widgets.selection_list import Selection

DIALOG_CSS = """
    align: center middle;
    & > Vertical { width: 76; max-width: 95%; height: auto; max-height: 90%; border: thick $accent;
                   background: $surface; padding: 0 1; }
    & Horizontal { height: auto; margin-top: 1; }
    & Button { margin-right: 2; }
"""


class ConfirmScreen(ModalScreen[bool]):
    """`question`, answered with y / n (or the buttons); escape says no."""

    DEFAULT_CSS = "ConfirmScreen {" + DIALOG_CSS + "}"
    BINDINGS = [Binding("y", "answer(True)", "Yes", id="confirm.yes"),
                Binding("n,escape", "answer(False)", "No", id="confirm.no")]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question, self.yes = question, yes

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question)
            with Horizontal():
                yield Button(f"{self.yes} (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class PromptScreen(ModalScreen[str | None]):
    """One line of text (a note, tags, a label): enter saves, escape cancels."""

    DEFAULT_CSS = "PromptScreen {" + DIALOG_CSS + "}"
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, title: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.title_text, self.value, self.placeholder = title, value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text)
            yield Input(self.value, placeholder=self.placeholder, id="prompt")
            yield Static("enter saves · escape cancels", classes="hint")

    @on(Input.Submitted, "#prompt")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ColumnsScreen(ModalScreen[list[str] | None]):
    """Which leaderboard columns to show: space toggles, enter applies, d restores the default."""

    DEFAULT_CSS = "ColumnsScreen {" + DIALOG_CSS + "} ColumnsScreen SelectionList { height: auto; max-height: 18; }"
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="columns.cancel"),
                Binding("enter", "apply", "Apply", id="columns.apply", priority=True),
                Binding("d", "default", "Default", id="columns.default")]

    def __init__(self, columns: list[tuple[str, str]], shown: list[str]) -> None:
        super().__init__()
        self.columns, self.shown = columns, shown

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Leaderboard columns (space toggles · enter applies · d default · escape cancels)")
            yield SelectionList[str](*[Selection(header, key, key in self.shown) for key, header in self.columns],
                                     id="columns")

    def action_apply(self) -> None:
        chosen = self.query_one("#columns", SelectionList).selected
        self.dismiss([key for key, _ in self.columns if key in chosen])

    def action_default(self) -> None:
        self.dismiss([])

    def action_cancel(self) -> None:
        self.dismiss(None)
