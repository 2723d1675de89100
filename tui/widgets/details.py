"""The selected run's configuration, and the diff of changed keys between two marked runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from tui.data import config_diff, flatten


def _value(v: Any) -> str:
    text = str(v)
    return text if len(text) <= 80 else text[:77] + "..."


class RunDetails(VerticalScroll):
    """Scrollable config view (or a diff when two runs are marked)."""

    DEFAULT_CSS = """
    RunDetails { height: 1fr; padding: 0 1; }
    RunDetails > Static { width: 1fr; }
    """

    def compose(self):
        yield Static("Select a run.", id="details-body")
        yield Static(id="details-checkpoint")

    def show_checkpoint(self, info: dict | None, error: str | None = None) -> None:
        """What the run's checkpoint holds (read by the engine): ours or the reference's."""
        box = self.query_one("#details-checkpoint", Static)
        if error:
            box.update(Text(f"checkpoint: {error}", style="red"))
            return
        if not info:
            box.update("")
            return
        source = "the reference's" if info.get("format") == "reference" else "adapter-tui"
        table = Table(title=f"{Path(str(info.get('path', ''))).name}: {source} checkpoint", expand=True,
                      show_edge=False)
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("value")
        params = info.get("params")
        rows = {"level": f"{info.get('level')} ({info.get('class')})",
                "parameters": f"{params:,}" if isinstance(params, int) else "—",
                "epoch": info.get("epoch"), **{f"arguments.{k}": v for k, v in (info.get("init_kwargs") or {}).items()},
                **{f"saved metrics.{k}": v for k, v in (info.get("metrics") or {}).items()}}
        for key, value in rows.items():
            if value is not None:
                table.add_row(key, _value(value))
        box.update(table)

    def show_config(self, name: str, config: dict, problems: list[str], error: str | None = None) -> None:
        table = Table(title=f"{name}: config", expand=True, show_edge=False)
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("value")
        for key, value in flatten(config).items():
            table.add_row(key, _value(value))
        notes = [p for p in problems if p] + ([error] if error and error not in problems else [])
        if not config:
            table.add_row("", Text("no config.json (yet)", style="dim"))
        body: Any = table
        if notes:
            from rich.console import Group

            body = Group(Text("\n".join(f"⚠ {n}" for n in notes), style="bold red"), table)
        self.query_one("#details-body", Static).update(body)

    def show_diff(self, a: tuple[str, dict], b: tuple[str, dict]) -> None:
        rows = config_diff(a[1], b[1])
        table = Table(title=f"changed keys: {a[0]} → {b[0]}", expand=True, show_edge=False)
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column(a[0], style="red")
        table.add_column(b[0], style="green")
        for key, va, vb in rows:
            table.add_row(key, _value(va), _value(vb))
        if not rows:
            table.add_row("", "identical settings", "")
        self.query_one("#details-body", Static).update(table)
