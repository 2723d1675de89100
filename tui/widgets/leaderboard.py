"""The leaderboard: every run as a row, sortable, filterable, best value per column highlighted,
updated live, with the columns the user picks. Its order, filter and counts always follow the
files: a live update that moves a run re-sorts the table. Reports the highlighted and marked
runs upward with messages. (Just over 400 lines: columns, widths, live updates, sorting and
filtering all act on the same table state.)"""

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

from common.text import plural, printable
from engine.rundir.query import FilterError, parse_filter
from engine.rundir.summary import HIGHER_IS_BETTER, RunSummary, SORT_KEYS, sort_runs
from tui.data import fmt_duration, fmt_float, fmt_int

# (key, header, formatter); the key is a RunSummary field (also the sort key).
COLUMNS = [
    ("run", "run", str),
    ("level", "level", str),
    ("label", "label", lambda v: v or ""),
    ("params", "params", fmt_int),
    ("state", "state", str),
    ("epochs_done", "epoch", None),
    ("best_val_loss", "best val", lambda v: fmt_float(v, 4)),
    ("cos_sim", "cos", lambda v: fmt_float(v, 4)),
    ("accept_90", "acc@.90", lambda v: fmt_float(v, 3)),
    ("consecutive_90", "cons@.90", lambda v: fmt_float(v, 2)),
    ("duration_s", "time", fmt_duration),
    ("prefix_mean_90", "prefix@.90", lambda v: fmt_float(v, 2)),
    ("expected_tokens", "E[tok]", lambda v: fmt_float(v, 2)),
    ("speedup", "est.×", lambda v: fmt_float(v, 2) + "x" if v is not None else "—"),
    ("speedup_measured", "meas.×", lambda v: fmt_float(v, 2) + "x" if v is not None else "—"),
    ("tau", "τ", lambda v: fmt_float(v, 2)),
    ("tags", "tags", lambda v: " ".join(v)),
    ("sweep", "sweep", lambda v: v or ""),
]
HEADERS = {key: header for key, header, _ in COLUMNS}
# What fits 80 columns (with the mark and the table's padding): the default on narrow terminals.
COMPACT = ("run", "level", "state", "epochs_done", "best_val_loss", "accept_90", "speedup")
# ... once a run has a measured speedup: the measured figures take the place of the proxies.
COMPACT_MEASURED = ("run", "level", "state", "best_val_loss", "speedup", "speedup_measured", "tau")
EVAL_KEYS = {"prefix_mean_90", "expected_tokens", "speedup"}  # shown once a run has eval.json
MEASURED_KEYS = {"speedup_measured", "tau"}                   # shown once a run has speculate.json
META_KEYS = {"label", "tags", "sweep"}                        # shown once a run has them
WIDE = 120
REFERENCE_COLUMNS = {"prefix_mean_90", "expected_tokens", "speedup"}
BEST_COLUMNS = {"best_val_loss", "cos_sim", "accept_90", "consecutive_90", "prefix_mean_90",
                "expected_tokens", "speedup", "speedup_measured", "tau"}
STATE_STYLE = {"running": "bold cyan", "done": "green", "failed": "bold red", "diverged": "bold red",
               "cancelled": "yellow", "interrupted": "yellow", "queued": "dim", "unreadable": "bold red"}
MARK = "●"
LEFT = {"run", "level", "state", "mark", "label", "tags", "sweep"}


class Cell:
    """A leaderboard cell: plain text and a style, made into rich Text only when it is drawn.

    It deliberately has no `__rich_measure__`: the DataTable measures every cell of every new row
    (a ConsoleOptions per cell), which was most of the time to load 1,000 runs. The leaderboard
    computes column widths itself from the plain strings and gives the columns fixed widths."""

    __slots__ = ("plain", "style", "justify")

    def __init__(self, plain: str, style: str = "", justify: str = "left") -> None:
        # a label, tag or run name is someone's writing: its escape sequences are shown, not obeyed
        self.plain = plain if plain.isprintable() else printable(plain)
        self.style, self.justify = style, justify

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
    """Filter box + count/sort line + table of runs."""

    DEFAULT_CSS = """
    Leaderboard { height: 1fr; }
    Leaderboard > #filter { display: none; height: 1; }
    Leaderboard.-filtering > #filter { display: block; }
    Leaderboard > #sortline { height: 1; color: $text-muted; padding: 0 1; }
    Leaderboard > DataTable { height: 1fr; }
    """

    BINDINGS = [
        Binding("s", "next_sort", "Sort", id="leaderboard.sort", tooltip="Sort by the next column"),
        Binding("S", "reverse_sort", "Reverse", id="leaderboard.reverse", show=False,
                tooltip="Reverse the sort order"),
        Binding("slash", "filter", "Filter", id="leaderboard.filter",
                tooltip="Filter: speedup>1.2 level=L4 tag=best, or any text"),
        Binding("space", "mark", "Mark", id="leaderboard.mark", tooltip="Mark the run (overlay, diff)"),
        Binding("full_stop", "toggle_archived", "Archived", id="leaderboard.archived", show=False,
                tooltip="Show or hide archived runs"),
        Binding("G", "toggle_groups", "Group", id="leaderboard.group", show=False,
                tooltip="Keep each sweep's runs together (on) or sort every run alone"),
        Binding("escape", "clear_filter", "Clear filter", id="leaderboard.clear_filter", show=False),
    ]

    @dataclass
    class RunHighlighted(Message):
        path: str | None

    @dataclass
    class MarksChanged(Message):
        paths: list[str]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: dict[str, RunSummary] = {}
        self.marked: list[str] = []
        self.sort_key = "best_val_loss"
        self.reverse = False
        self.filter_text = ""
        self.filter_error: str | None = None
        self._filter = parse_filter("")
        self.show_archived = False
        self.group_sweeps = True
        self.chosen: list[str] | None = None  # the user's columns; None: compact or all, by width
        self._best: dict[str, object] = {}
        self._columns: list = []
        self._widths: list[int] = []
        self._order: list[str] = []           # the paths as the table shows them

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: speedup>1.2 level=L4 state=done tag=best, or text (esc clears)",
                    id="filter", compact=True)
        yield Static(id="sortline")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True, fixed_columns=2)

    @property
    def table(self) -> DataTable:
        return self.query_one("#runs-table", DataTable)

    def on_mount(self) -> None:
        self._set_columns()
        self._update_sortline()

    def on_resize(self) -> None:
        if self.chosen is None and self._wanted_keys() != [k for k, _, _ in self._columns[1:]]:
            self.rebuild()

    # -- columns -----------------------------------------------------------------------------
    def available(self) -> list[str]:
        """Every column the data can fill now (eval and meta columns once a run has them)."""
        rows = self.rows.values()
        has_eval = any(r.speedup is not None or r.prefix_mean_90 is not None for r in rows)
        has_measured = any(r.speedup_measured is not None for r in rows)
        has_meta = {"label": any(r.label for r in rows), "tags": any(r.tags for r in rows),
                    "sweep": any(r.sweep for r in rows)}
        return [k for k, _, _ in COLUMNS if (k not in EVAL_KEYS or has_eval) and (k not in MEASURED_KEYS or has_measured)
                and (k not in META_KEYS or has_meta[k])]

    def _wanted_keys(self) -> list[str]:
        available = self.available()
        if self.chosen is not None:
            keys = [k for k in self.chosen if k in HEADERS]
            return ["run"] + [k for k in keys if k != "run"]
        if self.size.width and self.size.width < WIDE:
            compact = COMPACT_MEASURED if "speedup_measured" in available else COMPACT
            return [k for k in compact if k in available]
        return available

    def choose_columns(self, keys: list[str] | None) -> None:
        """Show these columns (the run's name always first); None: back to the default."""
        self.chosen = keys
        self.rebuild()

    def _set_columns(self, widths: list[int] | None = None) -> None:
        """(Re)create the columns with fixed widths (the header's width until rows say more)."""
        keys = self._wanted_keys()
        self._columns = [("mark", "", None)] + [c for k in keys for c in COLUMNS if c[0] == k]
        if widths is None or len(widths) != len(self._columns):
            widths = [cell_len(header) for _, header, _ in self._columns]
        self._widths = widths
        self.table.clear(columns=True)
        for (key, header, _), width in zip(self._columns, widths):
            self.table.add_column(Text(header), key=key, width=width)  # Text: "E[tok]" is not markup

    # -- data --------------------------------------------------------------------------------
    def set_runs(self, runs: list[RunSummary]) -> None:
        """Replace every row (initial load, rescan)."""
        self.rows = {r.path: r for r in runs}
        self.marked = [p for p in self.marked if p in self.rows]
        self.rebuild()

    def update_run(self, run: RunSummary) -> None:
        """Insert or update one row (live). The table is rebuilt when the row's place, its
        membership in the filter or the columns change; else only its cells are."""
        self.rows[run.path] = run
        old_best = dict(self._best)
        self._compute_best()
        if self._wanted_keys() != [k for k, _, _ in self._columns[1:]] or \
                [r.path for r in self.visible()] != self._order:
            self.rebuild()
            return
        if run.path not in self.table.rows:
            return
        cells = self._cells(run)
        if any(cell_len(c.plain) > w for c, w in zip(cells, self._widths)):
            self.rebuild()  # a wider value: new column widths
            return
        for (key, _, _), cell in zip(self._columns, cells):
            self.table.update_cell(run.path, key, cell)
        if run.path == self.highlighted_path:
            self._update_tooltip(run.path)
        # Only the cells that were, or now are, a column's best change their highlight.
        for key in {k for k in set(self._best) | set(old_best) if self._best.get(k) != old_best.get(k)}:
            if not any(k == key for k, _, _ in self._columns):
                continue
            marked = {old_best.get(key), self._best.get(key)}
            for path in self.table.rows:
                other = self.rows[path.value]
                if other.path != run.path and getattr(other, key) in marked:
                    self.table.update_cell(path, key, self._cell(other, key))
        self._update_sortline()

    def remove_run(self, path: str) -> None:
        self.rows.pop(path, None)
        if path in self.marked:
            self.marked.remove(path)
            self.post_message(self.MarksChanged(list(self.marked)))
        self.rebuild()

    def _shown(self, run: RunSummary) -> bool:
        archived_wanted = self.show_archived or any(t.attr == "archived" for t in self._filter.terms)
        return (archived_wanted or not run.archived) and self._filter.matches(run)

    def visible(self) -> list[RunSummary]:
        """The rows shown, sorted; with grouping, a sweep's runs together where its best one ranks."""
        ordered = sort_runs([r for r in self.rows.values() if self._shown(r)], self.sort_key)
        ordered = ordered[::-1] if self.reverse else ordered
        if not self.group_sweeps:
            return ordered
        groups: dict[str, list[RunSummary]] = {}
        for r in ordered:
            groups.setdefault(r.sweep or r.path, []).append(r)
        return [r for group in groups.values() for r in group]

    def rebuild(self) -> None:
        table = self.table
        current = self.highlighted_path
        self._compute_best()
        rows = self.visible()
        if self._wanted_keys() != [k for k, _, _ in self._columns[1:]]:
            self._set_columns()
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
        self._order = [r.path for r in rows]
        if current and current in table.rows:
            table.move_cursor(row=table.get_row_index(current), animate=False)
        self._update_sortline()
        self._update_tooltip(self.highlighted_path)
        if self.highlighted_path != current:
            self.post_message(self.RunHighlighted(self.highlighted_path))

    def _compute_best(self) -> None:
        best: dict[str, object] = {}
        shown = [r for r in self.rows.values() if not r.archived or self.show_archived]
        for key in BEST_COLUMNS:
            values = [getattr(r, key) for r in shown if getattr(r, key) is not None]
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
        if key == "state":  # the state alone: its message is in the tooltip and the details
            label = run.state + ("*" if run.seed_format else "") + ("!" if run.error else "")
            return Cell(label, STATE_STYLE.get(run.state, "bold red" if run.error else ""))
        if key == "run":
            return Cell(run.run, "dim" if run.archived else "")
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
        path = event.row_key.value if event.row_key else None
        self._update_tooltip(path)
        self.post_message(self.RunHighlighted(path))

    def _update_tooltip(self, path: str | None) -> None:
        """The highlighted run's message (a failed run's error), else the keys."""
        run = self.rows.get(path or "")
        self.table.tooltip = (Text(printable(f"{run.state}: {run.error}")) if run and run.error else
                              "space mark · s sort · / filter · f fork · R resume · o columns · ? all keys")

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
        shown, total = len(self._order), len(self.rows)
        archived = sum(r.archived for r in self.rows.values())
        count = f"{shown:,} of {plural(total, 'run')}" if shown != total else plural(total, "run")
        hidden = f" ({archived} archived hidden: .)" if archived and not self.show_archived else ""
        problem = f" · [b red]filter: {self.filter_error}[/]" if self.filter_error else (
            f" · filter {self.filter_text}" if self.filter_text else "")
        marked = f" · {len(self.marked)} marked" if self.marked else ""
        reference = " · † the reference's figures" if any(
            r.eval_source == "reference" for r in self.rows.values()) and any(
            k in REFERENCE_COLUMNS for k, _, _ in self._columns) else ""
        line = Text.from_markup(f"{count}{hidden} · sort {HEADERS.get(self.sort_key, self.sort_key)} {arrow}")
        line.append_text(Text.from_markup(problem))
        line.append(marked + reference)
        self.query_one("#sortline", Static).update(line)

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

    def action_toggle_groups(self) -> None:
        self.group_sweeps = not self.group_sweeps
        self.rebuild()

    def action_toggle_archived(self) -> None:
        self.show_archived = not self.show_archived
        self.rebuild()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        try:
            self._filter, self.filter_error = parse_filter(self.filter_text), None
        except FilterError as exc:  # keep showing what the last good filter showed
            self.filter_error = str(exc)
            self._update_sortline()
            return
        self.rebuild()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.set_filter(event.value)

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
