"""Rendered-content checks at 80x24 and 160x48 (text of the screen), help screen, palette."""

from __future__ import annotations

import pytest
from tui_support import make_run, make_seed_run, screen_text, wait_for


async def _loaded(app, pilot, n):
    assert await wait_for(pilot, lambda: app.main.leaderboard.table.row_count == n)
    assert await wait_for(pilot, lambda: app.main.curves.redraws > 0 and app.main.curves.drawn_history)
    assert await wait_for(pilot, lambda: "loss" in screen_text(app))  # the plot is on screen


async def test_80x24_tabs_one_plot(runs, app_factory):
    make_run(runs, "L1", "L1_20250101_000000")
    make_seed_run(runs)
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await _loaded(app, pilot, 2)
        text = screen_text(app)
        lines = text.splitlines()
        assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
        assert lines[0].startswith(" runs ") and str(runs) in text  # which runs directory, and why
        assert lines[1].split() == ["Runs", "1", "Launch", "2", "Queue", "3"]
        assert "L2_20240101_000000" in text and "best val" in text
        assert "loss" in text and "cosine" not in text  # one plot at a time
        assert "Sort" in lines[-1] and "palette" in lines[-1]
        await pilot.press("v")
        assert await wait_for(pilot, lambda: "cosine" in screen_text(app))


async def test_160x48_everything_side_by_side(runs, app_factory):
    make_run(runs, "L1", "L1_20250101_000000")
    make_run(runs, "L3", "L3_20250101_000000", start=0.4, state="running")
    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        await _loaded(app, pilot, 2)
        text = screen_text(app)
        for word in ("loss", "cosine", "acceptance", "acc@.90", "cons@.90", "time", "Quit", "Help"):
            assert word in text, word


async def test_help_screen_lists_bindings_with_ids(runs, app_factory):
    app = app_factory()
    async with app.run_test(size=(120, 72)) as pilot:  # tall enough for the whole table unscrolled
        await pilot.press("question_mark")
        assert await wait_for(pilot, lambda: "app.quit" in screen_text(app))
        text = screen_text(app)
        for binding_id in ("app.quit", "tab.launch", "leaderboard.sort", "queue.retry_resume", "launch.start_now"):
            assert binding_id in text
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: "leaderboard.sort" not in screen_text(app))


def test_every_binding_has_an_id():
    from textual.binding import Binding

    from tui.app import AdapterTUI
    from tui.panes.launch import LaunchPane
    from tui.panes.queue import QueuePane
    from tui.panes.runs import RunsPane
    from tui.screens.dialogs import ColumnsScreen, ConfirmScreen, PromptScreen
    from tui.screens.help import HelpScreen
    from tui.screens.main import MainScreen
    from tui.widgets.leaderboard import Leaderboard

    for cls in (AdapterTUI, MainScreen, HelpScreen, RunsPane, LaunchPane, QueuePane, Leaderboard, ConfirmScreen,
                PromptScreen, ColumnsScreen):
        for b in cls.BINDINGS:
            assert isinstance(b, Binding) and b.id, (cls.__name__, b)


async def test_command_palette_has_main_actions(runs, app_factory):
    from tui.panes.launch import LaunchPane
    from tui.panes.queue import QueuePane

    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        # the lazily mounted tabs in place (a Select still mounting at teardown trips Textual)
        assert await wait_for(pilot, lambda: {LaunchPane, QueuePane} <= app.main._ready)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in ("Start now", "Add to queue", "Queue preset", "Create demo dataset and train L1",
                      "Toggle log-scale y", "Keys"):
            assert title in titles


def test_docs_tui_md_lists_every_key_of_the_app():
    """docs/TUI.md's key table and the app's bindings match, key for key."""
    import re

    from tui_support import ROOT
    from tui.app import AdapterTUI
    from tui.panes.launch import LaunchPane
    from tui.panes.queue import QueuePane
    from tui.panes.runs import RunsPane
    from tui.screens.dialogs import ColumnsScreen, ConfirmScreen, PromptScreen
    from tui.screens.main import MainScreen
    from tui.widgets.leaderboard import Leaderboard

    shown = {"question_mark": "?", "slash": "/", "full_stop": "."}
    app_keys = {b.id: [shown.get(k.strip(), k.strip()) for k in b.key.split(",")]
                for cls in (AdapterTUI, MainScreen, RunsPane, Leaderboard, LaunchPane, QueuePane, ConfirmScreen,
                            PromptScreen, ColumnsScreen) for b in cls.BINDINGS}
    doc = (ROOT / "docs" / "TUI.md").read_text()
    doc_keys = {m.group(2): re.findall(r"`([^`]+)`", m.group(1))
                for m in re.finditer(r"^\| \w+ \| (.+?) \| .+ \| `([\w.]+)` \|$", doc, re.MULTILINE)}
    assert doc_keys == app_keys


async def test_a_launch_select_torn_down_while_mounting_does_not_crash_the_app():
    """Quitting while the lazily mounted Launch tab mounts: teardown takes a Select's parts before
    its mount handler looks for them."""
    from textual.app import App
    from textual.css.query import NoMatches
    from textual.widgets import Select
    from textual.widgets._select import SelectOverlay

    from tui.widgets.launch import LaunchSelect

    class Host(App):
        def compose(self):
            yield Select([("a", "a")], allow_blank=False, id="plain")
            yield LaunchSelect([("a", "a")], allow_blank=False, id="ours")

    app = Host()
    async with app.run_test() as pilot:
        await pilot.pause()
        plain, ours = app.query_one("#plain", Select), app.query_one("#ours", LaunchSelect)
        for select in (plain, ours):
            await select.query_one(SelectOverlay).remove()
            await select.remove()  # as teardown does: children first, then the widget
        with pytest.raises(NoMatches):
            plain._setup_options_renderables()  # what Select's mount handler does first
        ours._setup_options_renderables()  # no error once it is detached
