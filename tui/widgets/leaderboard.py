"""The leaderboard: every run as a row, sortable, filterable, best value per column
highlighted, updated live. Reports the highlighted and marked runs upward with messages."""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from engine.rundir.summary import HIGHER_IS_BETTER, RunSummary, SORT_KEYS, sort_runs
from tui.data import fmt_duration, fmt_float, fmt_int

# (key, header, formatter); the key is a RunSummary field (also the sort key).
COLUMNS = [
    ("run", "run", str),
    ("level", "level", str),
    ("params", "params", fmt_int),
    ("state", "state", str),
    ("epochs_done", "epoch", None),
    ("best_val_loss", "best val", lambda v: fmt_float(v, 4)),
    ("cos_sim", "cos", lambda v: fmt_float(v, 4)),
    ("accept_90", "acc@.90", lambda v: fmt_float(v, 3)),
    ("consecutive_90", "cons@.90", lambda v: fmt_float(v, 2)),
    ("duration_s", "time", fmt_duration),
]
EVAL_COLUMNS = [
    ("prefix_mean_90", "prefix@.90", lambda v: fmt_float(v, 2)),
    ("expected_tokens", "E[tok]", lambda v: fmt_float(v, 2)),
    ("speedup", "speedup", lambda v: fmt_float(v, 2) + "x" if v is not None else "—"),
]
REFERENCE_COLUMNS = {"prefix_mean_90", "expected_tokens", "speedup"}
BEST_COLUMNS = {"best_val_loss", "cos_sim", "accept_90", "consecutive_90", "prefix_mean_90",
                "expected_tokens", "speedup"}
STATE_STYLE = {"running": "bold cyan", "done": "green", "failed": "bold red", "diverged": "bold red",
               "cancelled": "yellow", "interrupted": "yellow", "queued": "dim", "unreadable": "bold red"}
MARK = "●"
LEFT = {"run", "level", "state", "mark"}


class Cell:
    """A leaderboard cell: plain text and a style, made into rich Text only when it is drawn.

    It deliberately has no `__rich_measure__`: the DataTable measures every cell of every new row
    (a ConsoleOptions per cell), which was most of the time to load 1,000 runs. The leaderboard
    computes column widths itself from the plain strings and gives the columns fixed widths."""

    __slots__ = ("plain", "style", "justify")

    def __init__(self, plain: str, style: str = "", justify: str = "left") -> None:
        self.plain, self.style, self.justify = plain, style, justify

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text(self.plain, style=self.style, justify=self.justify, no_wrap=True, overflow="ellipsis", end="")

    def __str__(self) -> str:
        return self.plain

    def __repr__(self) -> str:
        return f"Cell({self.plain!r}, {self.style!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cell) and (self.plain, self.style, self.justify) == (
            other.plain, other.style, other.justify)


class Leaderboard(Vertical):
    """Filter box + table of runs."""

    DEFAULT_CSS = """
    Leaderboard { height: 1fr; }
    Leaderboard > #filter { display: none; height: 3; }
    Leaderboard.-filtering > #filter { display: block; }
    Leaderboard > #sortline { height: 1; color: $text-muted; padding: 0 1; }
    Leaderboard > DataTable { height: 1fr; }
    """

    BINDINGS = [
        Binding("s", "next_sort", "Sort", id="leaderboard.sort", tooltip="Sort by the next column"),
        Binding("S", "reverse_sort", "Reverse", id="leaderboard.reverse", show=False,
                tooltip="Reverse the sort order"),
        Binding("slash", "filter", "Filter", id="leaderboard.filter", tooltip="Filter runs by text"),
        Binding("space", "mark", "Mark", id="leaderboard.mark", tooltip="Mark the run (overlay, diff)"),
        Binding("f", "fork", "Fork", id="leaderboard.fork", tooltip="Copy this run's settings into Launch"),
        Binding("R", "resume", "Resume", id="leaderboard.resume", tooltip="Resume this run through the queue"),
        Binding("escape", "clear_filter", "Clear filter", id="leaderboard.clear_filter", show=False),
    ]

    @dataclass
    class RunHighlighted(Message):
        path: str | None

    @dataclass
    class MarksChanged(Message):
        paths: list[str]

    @dataclass
    class ForkRequested(Message):
        path: str

    @dataclass
    class ResumeRequested(Message):
        path: str

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: dict[str, RunSummary] = {}
        self.marked: list[str] = []
        self.sort_key = "best_val_loss"
        self.reverse = False
        self.filter_text = ""
        self.show_eval = False
        self._best: dict[str, object] = {}
        self._columns: list = []
        self._widths: list[int] = []

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: text in run, level or state (esc clears)", id="filter")
        yield Static(id="sortline")
        table = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        table.tooltip = "space mark · s sort · / filter · f fork · R resume"
        yield table

    @property
    def table(self) -> DataTable:
        return self.query_one("#runs-table", DataTable)

    def on_mount(self) -> None:
        self._set_columns()
        self._update_sortline()

    # -- data --------------------------------------------------------------------------------
    def _set_columns(self, widths: list[int] | None = None) -> None:
        """(Re)create the columns with fixed widths (the header's width until rows say more)."""
        self._columns = [("mark", "", None)] + COLUMNS + (EVAL_COLUMNS if self.show_eval else [])
        if widths is None or len(widths) != len(self._columns):
            widths = [cell_len(header) for _, header, _ in self._columns]
        self._widths = widths
        self.table.clear(columns=True)
        for (key, header, _), width in zip(self._columns, widths):
            self.table.add_column(Text(header), key=key, width=width)  # Text: "E[tok]" is not markup

    def set_runs(self, runs: list[RunSummary]) -> None:
        """Replace every row (initial load, rescan)."""
        self.rows = {r.path: r for r in runs}
        self.marked = [p for p in self.marked if p in self.rows]
        self.rebuild()

    def update_run(self, run: RunSummary) -> None:
        """Insert or update one row in place (live)."""
        is_new = run.path not in self.rows
        self.rows[run.path] = run
        if self._needs_eval():
            self.rebuild()
            return
        if is_new:
            self.rebuild()
            return
        old_best = dict(self._best)
        self._compute_best()
        if run.path not in self.table.rows:
            return
        cells = self._cells(run)
        if any(cell_len(c.plain) > w for c, w in zip(cells, self._widths)):
            self.rebuild()  # a wider value: new column widths
            return
        for (key, _, _), cell in zip(self._columns, cells):
            self.table.update_cell(run.path, key, cell)
        # Only the cells that were, or now are, a column's best change their highlight.
        for key in {k for k in set(self._best) | set(old_best) if self._best.get(k) != old_best.get(k)}:
            if not any(k == key for k, _, _ in self._columns):
                continue
            marked = {old_best.get(key), self._best.get(key)}
            for path in self.table.rows:
                other = self.rows[path.value]
                if other.path != run.path and getattr(other, key) in marked:
                    self.table.update_cell(path, key, self._cell(other, key))

    def _needs_eval(self) -> bool:
        want = any(r.speedup is not None or r.prefix_mean_90 is not None for r in self.rows.values())
        if want != self.show_eval:
            self.show_eval = want
            self._set_columns()
            return True
        return False

    def visible(self) -> list[RunSummary]:
        text = self.filter_text.lower()
        rows = [r for r in self.rows.values()
                if not text or text in f"{r.run} {r.level} {r.state} {r.error or ''}".lower()]
        ordered = sort_runs(rows, self.sort_key)
        return ordered[::-1] if self.reverse else ordered

    def rebuild(self) -> None:
        table = self.table
        current = self.highlighted_path
        self._needs_eval()
        self._compute_best()
        rows = self.visible()
        cells = [self._cells(r) for r in rows]
        widths = [cell_len(header) for _, header, _ in self._columns]
        for row in cells:
            widths = [max(w, cell_len(c.plain)) for w, c in zip(widths, row)]
        if widths != self._widths:
            self._set_columns(widths)
        else:
            table.clear()
        for r, row in zip(rows, cells):
            table.add_row(*row, key=r.path)
        if current and current in self.rows and current in table.rows:
            table.move_cursor(row=table.get_row_index(current), animate=False)
        self._update_sortline()
        if self.highlighted_path != current:
            self.post_message(self.RunHighlighted(self.highlighted_path))

    def _compute_best(self) -> None:
        best: dict[str, object] = {}
        for key in BEST_COLUMNS:
            values = [getattr(r, key) for r in self.rows.values() if getattr(r, key) is not None]
            if values:
                best[key] = max(values) if key in HIGHER_IS_BETTER else min(values)
        self._best = best

    def _cells(self, run: RunSummary) -> list[Cell]:
        return [self._cell(run, key, fmt) for key, _, fmt in self._columns]

    def _cell(self, run: RunSummary, key: str, fmt=None) -> Cell:
        if key == "mark":
            return Cell(MARK, "bold magenta") if run.path in self.marked else Cell(" ")
        if key == "epochs_done":
            return Cell(f"{run.epochs_done}/{run.num_epochs}" if run.num_epochs else str(run.epochs_done),
                        justify="right")
        if key == "state":
            label = run.state + ("*" if run.seed_format else "")
            if run.error:
                return Cell(f"{label}: {run.error}"[:48], STATE_STYLE.get(run.state, "bold red"))
            return Cell(label, STATE_STYLE.get(run.state, ""))
        if fmt is None:
            fmt = next(f for k, _, f in self._columns if k == key)
        value = getattr(run, key)
        best = (key in self._best and value is not None and value == self._best[key] and len(self.rows) > 1)
        plain = fmt(value) if fmt else str(value)
        if run.eval_source == "reference" and key in REFERENCE_COLUMNS and value is not None:
            plain += "†"  # the reference's own definition (its acceptance_metrics.json)
        return Cell(plain, "bold reverse green" if best else "", "left" if key in LEFT else "right")

    # -- selection ---------------------------------------------------------------------------
    @property
    def highlighted_path(self) -> str | None:
        table = self.table
        if table.row_count == 0:
            return None
        try:
            key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        except Exception:
            return None
        return key.value

    def select_path(self, path: str) -> None:
        if path in self.table.rows:
            self.table.move_cursor(row=self.table.get_row_index(path), animate=False)

    @on(DataTable.RowHighlighted, "#runs-table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.post_message(self.RunHighlighted(event.row_key.value if event.row_key else None))

    @on(DataTable.HeaderSelected, "#runs-table")
    def _header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = event.column_key.value
        if key in SORT_KEYS:
            self.reverse = not self.reverse if key == self.sort_key else False
            self.sort_key = key
            self.rebuild()

    # -- actions -----------------------------------------------------------------------------
    def _update_sortline(self) -> None:
        arrow = "↑" if self.reverse else "↓"
        note = f" · filter '{self.filter_text}'" if self.filter_text else ""
        marked = f" · {len(self.marked)} marked" if self.marked else ""
        reference = " · † the reference's figures" if any(
            r.eval_source == "reference" for r in self.rows.values()) and self.show_eval else ""
        self.query_one("#sortline", Static).update(
            f"{len(self.rows)} runs · sort {self.sort_key} {arrow}{note}{marked}{reference}")

    def _sort_keys(self) -> list[str]:
        return [k for k, _, _ in self._columns if k in SORT_KEYS]

    def action_next_sort(self) -> None:
        keys = self._sort_keys()
        self.sort_key = keys[(keys.index(self.sort_key) + 1) % len(keys)] if self.sort_key in keys else keys[0]
        self.reverse = False
        self.rebuild()

    def action_reverse_sort(self) -> None:
        self.reverse = not self.reverse
        self.rebuild()

    def action_filter(self) -> None:
        self.add_class("-filtering")
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        self.remove_class("-filtering")
        self.table.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.filter_text = event.value.strip()
        self.rebuild()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value.strip():
            self.remove_class("-filtering")
        self.table.focus()

    def action_mark(self) -> None:
        path = self.highlighted_path
        if not path:
            return
        if path in self.marked:
            self.marked.remove(path)
        else:
            self.marked.append(path)
        self.table.update_cell(path, "mark", self._cell(self.rows[path], "mark"))
        self._update_sortline()
        self.post_message(self.MarksChanged(list(self.marked)))

    def action_fork(self) -> None:
        if self.highlighted_path:
            self.post_message(self.ForkRequested(self.highlighted_path))

    def action_resume(self) -> None:
        if self.highlighted_path:
            self.post_message(self.ResumeRequested(self.highlighted_path))
