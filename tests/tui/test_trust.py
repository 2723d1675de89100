"""What a researcher must be able to trust at a glance (issue 16): the Launch form follows the
data on disk, the leaderboard follows the files, keys do what the help says, 80 columns work,
and the everyday actions (filter, archive, delete, notes, tags, columns, the worker) hold."""

from __future__ import annotations

import json
import shutil

from textual.widgets import Input, SelectionList
from tui_support import CONFIG, make_eval, make_run, screen_text, wait_for

from common.fileio import write_json


def board(app):
    return app.main.leaderboard


# -- 1. the demo's data appears: Launch validates again and the banner goes -------------------
async def test_launch_validates_again_when_the_demo_data_appears(tmp_path, runs, backend):
    from tui.app import make_app

    config = tmp_path / "adapters.toml"
    shutil.copy(CONFIG, config)  # its demo dataset lies under runs/datasets: missing for now
    backend.require_existing = True
    app = make_app(runs, config, backend=backend)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: app.main.launch.form.has_class("-first-run"))
        form = app.main.launch.form
        assert await wait_for(pilot, lambda: form.dataset_ok is False)
        # the data appears (the demo's synth, another terminal): the watcher sees runs/datasets
        for part in ("train", "val"):
            (runs / "datasets" / "demo" / part).mkdir(parents=True)
        assert await wait_for(pilot, lambda: form.dataset_ok is True)
        assert not form.has_class("-first-run")
        assert await wait_for(pilot, lambda: "No dataset found" not in screen_text(app))  # once repainted
        await pilot.press("ctrl+o")
        assert await wait_for(pilot, lambda: backend.queue.job_list)
        assert backend.queue.job_list[0].dataset == "demo"


# -- 2. the leaderboard's order, filter and counts follow the files --------------------------
async def test_live_updates_re_sort_and_re_filter(runs, app_factory):
    a = make_run(runs, "L1", "L1_a", start=1.0, state="running")
    b = make_run(runs, "L1", "L1_b", start=0.5)
    app = app_factory()
    async with app.run_test(size=(120, 30)) as pilot:
        assert await wait_for(pilot, lambda: board(app).table.row_count == 2)
        order = lambda: [key.value for key in board(app).table.rows]  # noqa: E731
        assert order() == [str(b), str(a)]  # best val loss first
        write_json(a / "history.json", {"val_loss": [0.9, 0.1], "val_cos_sim": [0.5, 0.9]})
        assert await wait_for(pilot, lambda: order() == [str(a), str(b)])  # the new best moves up
        await pilot.press("slash", *"state=running")
        assert await wait_for(pilot, lambda: order() == [str(a)])
        assert "1 of 2 runs" in screen_text(app)
        write_json(a / "status.json", {"state": "done", "epoch": 2, "num_epochs": 2})
        assert await wait_for(pilot, lambda: order() == [])  # it finished: the filter drops it
        assert "0 of 2 runs" in screen_text(app)


# -- 3. a long state message never breaks the table -----------------------------------------
async def test_a_diverged_runs_message_leaves_every_column_in_view(runs, app_factory):
    run = make_run(runs, "L5F", "L5F_20261127_121212", state="diverged")
    write_json(run / "status.json", {"state": "diverged", "error": "diverged: non-finite loss at epoch 1 step 2"})
    make_eval(make_run(runs, "L1", "L1_20261127_101010"), [0.9, 0.7, 0.5])
    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        assert await wait_for(pilot, lambda: board(app).table.row_count == 2)
        text = screen_text(app)
        assert "diverged!" in text and "est.×" in text and "non-finite" not in text.split("Curves")[0]
        board(app).select_path(str(run))
        await pilot.press("i")
        assert await wait_for(pilot, lambda: "non-finite loss at epoch 1 step 2" in screen_text(app))


# -- 5, 6. keys: digits type in fields, escape leaves, F-keys and ctrl+s work from anywhere ----
async def test_keys_in_text_fields_and_launch_actions_without_focusing_the_form(runs, app_factory, backend):
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        tabs = app.main.query_one("#tabs")
        await pilot.press("2")
        assert await wait_for(pilot, lambda: tabs.active == "launch")
        epochs = app.main.launch.query_one("#f-num_epochs", Input)
        epochs.focus()
        await pilot.press("end", "2", "q")  # typed, not a tab switch and not quit
        assert epochs.value == "502q" and tabs.active == "launch" and app.is_running
        await pilot.press("escape")  # leaves the field...
        assert not isinstance(app.focused, Input)
        await pilot.press("1")  # ...and the digits switch tabs again
        assert tabs.active == "runs"
        await pilot.press("f2")
        assert tabs.active == "launch"
        epochs.focus()
        await pilot.press("f3")  # from a text field too
        assert tabs.active == "queue"
        await pilot.press("f2")
        epochs.value = "3"
        app.main.query_one("#tabs").focus()  # focus on the tab bar, not in the form
        await pilot.press("ctrl+o")
        assert await wait_for(pilot, lambda: backend.queue.job_list)
        assert backend.queue.job_list[0].settings["num_epochs"] == 3


# -- 7. help and palette say keys as you type them; sort names are the headers ---------------
async def test_help_shows_keys_as_typed_and_the_palette_lists_keys_once(runs, app_factory):
    app = app_factory()
    async with app.run_test(size=(120, 60)) as pilot:
        await pilot.press("question_mark")
        assert await wait_for(pilot, lambda: "│ ?" in screen_text(app))
        text = screen_text(app)
        assert "question_mark" not in text and "slash" not in text and "full_stop" not in text
        assert "│ ?" in text and "│ /" in text
        await pilot.press("escape")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert titles.count("Keys") == 1


# -- 8. 80x24 ----------------------------------------------------------------------------------
async def test_80x24_fits_the_compact_columns_buttons_footer_and_progress(runs, app_factory, backend):
    live = make_run(runs, "L5F", "L5F_20261127_121212", state="running")
    write_json(live / "status.json", {"state": "running", "pid": 1, "host": "elsewhere", "epoch": 1,
                                      "num_epochs": 5, "step": 3, "steps_per_epoch": 10, "running_loss": 0.4,
                                      "tokens_per_s": 12345.0, "eta_s": 600, "device": "cuda:0"})
    make_eval(make_run(runs, "L1", "L1_20261127_101010"), [0.9, 0.7, 0.5])
    backend.queue.add_many([("L5F", {"num_epochs": 5})])
    backend.queue.job_list[0].run_dir = str(live)
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: board(app).table.row_count == 2)
        board(app).select_path(str(live))
        assert await wait_for(pilot, lambda: "ETA" in screen_text(app))
        text = screen_text(app)
        lines = text.splitlines()
        assert all(len(line) <= 80 for line in lines)
        for word in ("run", "level", "state", "epoch", "best val", "acc@.90", "est.×", "12.3k tok/s", "ETA 10m00s"):
            assert word in text, word
        assert "━━━" not in lines[lines.index(next(line for line in lines if "tok/s" in line))]
        assert lines[-1].rstrip().endswith("palette")  # the footer is whole
        assert board(app).table.fixed_columns == 2  # the mark and the run's name stay when scrolling right
        await pilot.press("2")
        assert await wait_for(pilot, lambda: "Start now" in screen_text(app) and "Add to queue" in screen_text(app))
        await pilot.press("3")
        assert await wait_for(pilot, lambda: "L5F_20261127_121212" in screen_text(app))  # the whole run name
        await pilot.press("question_mark")
        assert await wait_for(pilot, lambda: "Leaderboard and curves" in screen_text(app))
        help_text = screen_text(app)
        assert "Leaderboard and curves" in help_text and "app.quit" not in help_text  # no id column at 80


async def test_columns_can_be_chosen(runs, app_factory):
    make_run(runs, "L1", "L1_a")
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: board(app).table.row_count == 1)
        assert "time" not in [k for k, _, _ in board(app)._columns]
        await pilot.press("o")
        assert await wait_for(pilot, lambda: app.screen.query("#columns"))
        choices = app.screen.query_one("#columns", SelectionList)
        choices.deselect("state")
        choices.select("duration_s")
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: "duration_s" in [k for k, _, _ in board(app)._columns])
        assert "state" not in [k for k, _, _ in board(app)._columns]
        await pilot.press("o", "d")  # back to the default
        assert await wait_for(pilot, lambda: "state" in [k for k, _, _ in board(app)._columns])


# -- 10. everyday features -----------------------------------------------------------------
async def test_filter_expressions(runs, app_factory):
    make_eval(make_run(runs, "L4", "L4_fast", start=0.4), [0.9, 0.8, 0.7, 0.6])   # speedup ~2.8
    make_eval(make_run(runs, "L4", "L4_slow", start=0.5), [0.2, 0.05])            # ~1.2
    make_eval(make_run(runs, "L1", "L1_fast", start=0.6), [0.9, 0.8, 0.7, 0.6])
    app = app_factory()
    async with app.run_test(size=(120, 30)) as pilot:
        assert await wait_for(pilot, lambda: board(app).table.row_count == 3)
        board(app).set_filter("speedup>1.5 level=L4")
        assert [r.run for r in board(app).visible()] == ["L4_fast"]
        board(app).set_filter(">1.2")
        assert board(app).filter_error and "FIELD OP VALUE" in board(app).filter_error
        assert [r.run for r in board(app).visible()] == ["L4_fast"]  # the last good filter holds
        assert await wait_for(pilot, lambda: "filter:" in screen_text(app))
        board(app).set_filter("fast")
        assert {r.run for r in board(app).visible()} == {"L4_fast", "L1_fast"}


async def test_archive_hides_and_dot_shows_then_delete_after_confirming(runs, app_factory):
    keep = make_run(runs, "L1", "L1_keep", start=0.5)
    gone = make_run(runs, "L1", "L1_gone", start=1.0)
    (gone / "notes.txt").write_text("not a run's file")
    app = app_factory()
    async with app.run_test(size=(120, 30)) as pilot:
        assert await wait_for(pilot, lambda: board(app).table.row_count == 2)
        board(app).select_path(str(keep))
        await pilot.press("A")
        assert await wait_for(pilot, lambda: board(app).table.row_count == 1)
        assert json.loads((keep / "meta.json").read_text())["archived"] is True
        assert keep.is_dir() and "1 archived hidden" in screen_text(app)
        await pilot.press("full_stop")
        assert await wait_for(pilot, lambda: board(app).table.row_count == 2)
        board(app).select_path(str(gone))
        await pilot.press("D")
        assert await wait_for(pilot, lambda: "Delete" in screen_text(app) and "L1_gone" in screen_text(app))
        await pilot.press("n")  # no: nothing happens
        assert await wait_for(pilot, lambda: app.screen is app.main)  # the question is gone
        assert (gone / "config.json").exists()
        await pilot.press("D")
        assert await wait_for(pilot, lambda: app.screen is not app.main)
        await pilot.press("y")
        assert await wait_for(pilot, lambda: not (gone / "config.json").exists())
        assert (gone / "notes.txt").exists()  # what is not a run's file stays
        assert await wait_for(pilot, lambda: str(gone) not in board(app).rows)


async def test_note_tags_and_label_are_edited_in_meta_json(runs, app_factory):
    run = make_run(runs, "L1", "L1_a")
    app = app_factory()
    async with app.run_test(size=(120, 30)) as pilot:
        assert await wait_for(pilot, lambda: board(app).table.row_count == 1)
        await pilot.press("T")
        assert await wait_for(pilot, lambda: app.screen.query("#prompt"))
        await pilot.press(*"best ablation", "enter")
        assert await wait_for(pilot, lambda: board(app).rows[str(run)].tags == ["best", "ablation"])
        await pilot.press("T")
        assert await wait_for(pilot, lambda: app.screen.query("#prompt"))
        app.screen.query_one("#prompt", Input).value = "-ablation"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: board(app).rows[str(run)].tags == ["best"])
        await pilot.press("n")
        assert await wait_for(pilot, lambda: app.screen.query("#prompt"))
        await pilot.press(*"lr too high", "enter")
        await pilot.press("L")
        assert await wait_for(pilot, lambda: app.screen.query("#prompt"))
        await pilot.press(*"baseline", "enter")
        assert await wait_for(pilot, lambda: board(app).rows[str(run)].label == "baseline")
        meta = json.loads((run / "meta.json").read_text())
        assert meta["note"] == "lr too high" and meta["tags"] == ["best"] and meta["label"] == "baseline"
        assert "label" in [k for k, _, _ in board(app)._columns]  # the label shows in the leaderboard
        board(app).set_filter("tag=best")
        assert len(board(app).visible()) == 1


async def test_three_marked_runs_diff_as_columns_and_the_selected_run_is_in_the_overlay(runs, app_factory):
    for name, lr in (("L1_a", 0.001), ("L1_b", 0.003), ("L1_c", 0.01)):
        make_run(runs, "L1", name, training={"epochs": 3, "batch_size": 8, "learning_rate": lr, "early_stopping": 10})
    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        assert await wait_for(pilot, lambda: board(app).table.row_count == 3)
        await pilot.press("space")  # mark the first; the selection moves to the second
        await pilot.press("down")
        assert await wait_for(pilot, lambda: len(app.main.curves.overlay) == 2)  # selected + marked
        await pilot.press("space", "down", "space")
        await pilot.press("i")
        assert await wait_for(pilot, lambda: "changed keys across 3 runs" in screen_text(app))
        text = screen_text(app)
        assert "training.learning_rate" in text and "0.003" in text and "0.01" in text


async def test_smoothing_cycles_its_weight(runs, app_factory):
    make_run(runs, "L1", "L1_a")
    app = app_factory()
    async with app.run_test(size=(120, 30)) as pilot:
        assert await wait_for(pilot, lambda: board(app).table.row_count == 1)
        weights = []
        for _ in range(3):
            await pilot.press("e")
            weights.append(app.main.curves.smooth)
        assert weights == [0.6, 0.9, 0.0]


async def test_worker_stop_key_and_a_notification_on_cancel(runs, app_factory, backend):
    backend.queue.add_many([("L1", {"num_epochs": 3}), ("L2", {"num_epochs": 3})])
    backend.queue.job_list[0].state, backend.queue.job_list[0].position = "running", None
    app = app_factory()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("3")
        assert await wait_for(pilot, lambda: app.main.queue_panel.table.row_count == 2)
        await pilot.press("x")
        assert await wait_for(pilot, lambda: any("cancelling job 1" in n.message for n in app._notifications))
        await pilot.press("W")
        assert await wait_for(pilot, lambda: "Stop the queue worker?" in screen_text(app))
        await pilot.press("y")
        assert await wait_for(pilot, lambda: getattr(backend, "workers_stopped", 0) == 1)
        assert await wait_for(pilot, lambda: any("stopped the worker" in n.message for n in app._notifications))


async def test_a_level_added_to_adapters_toml_appears_without_a_restart(runs, app_factory, demo_config):
    app = app_factory()
    async with app.run_test(size=(120, 48)) as pilot:
        await pilot.press("2")
        levels = lambda: app.main.launch.query_one("#levels", SelectionList)  # noqa: E731
        assert await wait_for(pilot, lambda: levels().option_count == 7)
        text = demo_config.read_text() + '\n[levels.L4-wide]\nclass = "AttentionAdapter"\nname = "Wide attention"\n' \
                                         'description = "L4 with a wider FFN"\nffn_dim = 4096\n'
        demo_config.write_text(text)
        assert await wait_for(pilot, lambda: levels().option_count == 8)
        assert levels().get_option("L4-wide")


async def test_the_header_says_which_runs_directory(runs, app_factory):
    app = app_factory()
    async with app.run_test(size=(120, 30)) as pilot:
        assert await wait_for(pilot, lambda: f"runs {runs}" in screen_text(app).splitlines()[0])


async def test_a_dataset_registered_by_extract_appears_in_the_launch_list(runs, backend, tmp_path):
    from textual.widgets import Select

    from adapters.registry import register_dataset
    from support import make_synth
    from tui.app import make_app

    config = tmp_path / "adapters.toml"
    config.write_text(CONFIG.read_text())  # its demo dataset does not exist here: the first-run offer
    backend.require_existing = True  # inspecting the missing demo dataset fails, as it does for real
    app = make_app(runs, config, backend=backend)
    async with app.run_test(size=(120, 48)) as pilot:
        assert await wait_for(pilot, lambda: app.main.launch.form.has_class("-first-run"))
        names = lambda: [value for _, value in app.main.launch.query_one("#dataset", Select)._options]  # noqa: E731
        assert "extracted" not in names()
        make_synth(tmp_path / "x", samples=8, val_samples=4, hidden_dim=32, chunk_size=8)
        register_dataset(config, "extracted", tmp_path / "x" / "train", tmp_path / "x" / "val")
        assert await wait_for(pilot, lambda: "extracted" in names())
        assert await wait_for(pilot, lambda: not app.main.launch.form.has_class("-first-run"))
        # the form now offers the dataset that exists, not the missing demo
        form = app.main.launch.form
        train = str(tmp_path / "x" / "train")
        # the rebuilt form lists its options before its mount fills the paths: wait for both
        shows = lambda name: (form.query_one("#dataset", Select).value == name  # noqa: E731
                              and form.query_one("#data-path", Input).value == train)
        assert await wait_for(pilot, lambda: shows("extracted"))
        register_dataset(config, "another", tmp_path / "x" / "train")
        assert await wait_for(pilot, lambda: "another" in names())

        def pick(name):  # the rebuilt Select takes a value once its own parts are mounted
            form.query_one("#dataset", Select).value = name
            return True

        assert await wait_for(pilot, lambda: pick("another"))  # the user's pick survives the next reload
        register_dataset(config, "third", tmp_path / "x" / "train")
        assert await wait_for(pilot, lambda: "third" in names())  # the form is rebuilt
        assert await wait_for(pilot, lambda: shows("another"))


async def test_escape_sequences_in_what_users_wrote_are_shown_not_obeyed(runs, app_factory):
    from common.fileio import write_json
    from tui_support import make_run

    run = make_run(runs, "L1", "L1_20261205_010101")
    write_json(run / "meta.json", {"label": "x\x1b[2J\x1b[31mRED", "tags": [], "note": "see \x1b]0;pwned\x07",
                                   "archived": False})
    (run / "train.log").write_text("epoch 1\x1b[2J\x1b[H done\n")
    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        assert await wait_for(pilot, lambda: "\\x1b[31mRED" in screen_text(app))  # the label column
        assert "1 run" in screen_text(app) and "1 runs" not in screen_text(app)
        app.main.leaderboard.select_path(str(run))
        assert await wait_for(pilot, lambda: app.main.selected == str(run))
        await pilot.press("i")
        assert await wait_for(pilot, lambda: "\\x1b]0;pwned\\x07" in screen_text(app))  # the note, in details
        assert "\x1b" not in screen_text(app)
        lines = screen_text(app).splitlines()
        assert "Runs" in lines[1] and "label" in screen_text(app)  # the tabs and the column titles are intact
