"""Models of different widths in the app: the Launch form counts at the dataset's widths, the
details pane names them."""

from __future__ import annotations

from textual.widgets import Input

from tui_support import config, make_run, screen_text, wait_for


async def test_the_launch_form_counts_parameters_at_the_datasets_two_widths(runs, app_factory, backend):
    backend.inspect_result = {"format": "chunked", "samples": 100, "chunks": 2, "hidden_dim": 48, "drafter_dim": 32}
    app = app_factory()
    async with app.run_test(size=(120, 48)) as pilot:
        await pilot.press("2")
        launch = app.main.launch
        launch.query_one("#data-path", Input).value = "/some/wide/data"
        assert await wait_for(pilot, lambda: launch.form.widths == (32, 48) and launch.form.params)
        assert (32, 48) in backend.counted_at
        text = screen_text(app)
        assert "hidden 32→48" in text and "params at H=32→48" in text


async def test_the_details_pane_names_the_widths_where_they_differ(runs, app_factory):
    adapter = {**config("L1")["adapter"], "hidden_dim": 48, "drafter_dim": 32}
    make_run(runs, "L1", "L1_wide", adapter=adapter)
    make_run(runs, "L1", "L1_same", start=0.5)
    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        main = app.main
        assert await wait_for(pilot, lambda: main.selected is not None)
        await pilot.press("i")  # the details tab
        seen = {}
        for _ in range(2):  # both rows, in whatever order the leaderboard sorts them
            name = main.selected.rsplit("/", 1)[-1]
            assert await wait_for(pilot, lambda: name in screen_text(app) and "config" in screen_text(app))
            seen[name] = "widths: 32→48 (drafter→verifier)" in screen_text(app)
            await pilot.press("down")
            assert await wait_for(pilot, lambda: len(seen) == 2 or not main.selected.endswith(name))
        assert seen == {"L1_wide": True, "L1_same": False}
