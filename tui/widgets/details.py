"""The selected run: its state and the whole of its error message, the user's label, tags and
note, its configuration and checkpoint; or the keys that differ across the marked runs, one
column per run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from common.text import printable, widths_text
from engine.rundir.diff import config_diff, flatten


def _value(v: Any) -> Text:
    text = printable(v)
    return Text(text if len(text) <= 80 else text[:77] + "...")


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
        drafter, hidden = info.get("drafter_dim"), info.get("hidden_dim")
        rows = {"level": f"{info.get('level')} ({info.get('class')})",
                "parameters": f"{params:,}" if isinstance(params, int) else "—",
                "widths (drafter→verifier)": widths_text(drafter, hidden) if drafter != hidden else None,
                "epoch": info.get("epoch"), **{f"arguments.{k}": v for k, v in (info.get("init_kwargs") or {}).items()},
                **{f"saved metrics.{k}": v for k, v in (info.get("metrics") or {}).items()}}
        for key, value in rows.items():
            if value is not None:
                table.add_row(key, _value(value))
        box.update(table)

    def show_run(self, data: Any) -> None:
        """A RunData: what the leaderboard's cells leave out first, then the config."""
        run = data.summary
        head = Text()
        head.append(printable(run.run), style="bold")
        head.append(f"  {run.state}")
        if run.label:
            head.append(f"  · {printable(run.label)}", style="italic")
        if run.archived:
            head.append("  · archived", style="dim")
        if run.drafter_dim != run.hidden_dim:
            head.append(f"\nwidths: {widths_text(run.drafter_dim, run.hidden_dim)} (drafter→verifier)", style="magenta")
        if run.tags:
            head.append("\ntags: " + printable(" ".join(run.tags)), style="cyan")
        if run.note:
            head.append("\nnote: " + printable(run.note, multiline=True))
        self.show_config(run.run, data.config, data.problems, run.error, head)

    def show_config(self, name: str, config: dict, problems: list[str], error: str | None = None,
                    head: Text | None = None) -> None:
        table = Table(title=f"{name}: config", expand=True, show_edge=False)
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("value")
        for key, value in flatten(config).items():
            table.add_row(key, _value(value))
        notes = [p for p in problems if p] + ([error] if error and error not in problems else [])
        if not config:
            table.add_row("", Text("no config.json (yet)", style="dim"))
        from rich.console import Group

        parts = ([head] if head is not None else []) + (
            [Text(printable("\n".join(f"⚠ {n}" for n in notes), multiline=True), style="bold red")] if notes else []) + [table]
        body: Any = Group(*parts)
        self.query_one("#details-body", Static).update(body)

    def show_diff(self, runs: list[tuple[str, dict]]) -> None:
        """The keys whose values differ between the marked runs, one column per run."""
        rows = config_diff([config for _, config in runs])
        names = [name for name, _ in runs]
        title = f"changed keys: {names[0]} → {names[1]}" if len(runs) == 2 else f"changed keys across {len(runs)} runs"
        table = Table(title=title, expand=True, show_edge=False)
        table.add_column("key", style="bold", no_wrap=True)
        for i, name in enumerate(names):
            table.add_column(name, style=("red", "green")[i] if len(runs) == 2 else "")
        for key, values in rows:
            table.add_row(key, *(_value(v) for v in values))
        if not rows:
            table.add_row("", "identical settings", *[""] * (len(runs) - 1))
        self.query_one("#details-body", Static).update(table)
