"""Acceptance by position (eval.json): the parser against the engine's schema, the panel for
the selected run and overlaid for marked runs, missing/garbage files, and live updates."""

from __future__ import annotations

import json

import pytest

from tui_support import eval_result, make_eval, make_run, screen_text, wait_for
from common.fileio import write_json
from engine.rundir.evaluation import NO_EVAL, parse_eval, read_eval
from tui.widgets.acceptance import visible_positions

CURVE_A = [0.9, 0.8, 0.6, 0.4, 0.2, 0.1, 0.05] + [0.0] * 20
CURVE_B = [0.95, 0.9, 0.85, 0.7, 0.6, 0.5, 0.3, 0.1] + [0.0] * 20


def test_parse_eval_reads_the_primary_threshold():
    data = eval_result(CURVE_A, gamma=5, draft_cost=0.1, top=True)
    view, problem = parse_eval(data)
    assert problem is None and view.tau == "0.9"
    assert view.by_position == pytest.approx(CURVE_A)
    assert view.gamma == 5 and view.draft_cost == 0.1
    assert view.expected_at_gamma == pytest.approx(sum(CURVE_A[:5]))
    assert view.speedup == pytest.approx((sum(CURVE_A[:5]) + 1) / 1.5)
    assert view.token_top1 == 0.5 and view.token_top5 == 0.75
    assert set(view.prefix) == {"mean", "median", "p90"}
    # another threshold: its curve and E[min(L, γ)], but no speedup (that belongs to 0.9)
    other, _ = parse_eval(data, 0.8)
    assert other.tau == "0.8" and other.speedup is None
    assert other.expected_at_gamma == pytest.approx(data["expected_accepted"]["0.8"]["5"])


@pytest.mark.parametrize("data, words", [
    ([1, 2], "not a JSON object"),
    ({"speedup": 2.0}, "no accept_by_position"),
    ({"accept_by_position": {"0.9": "x"}}, "not a list"),
    ({"threshold": 0.95, "accept_by_position": {"0.9": [1.0]}}, "no threshold 0.95"),
])
def test_parse_eval_says_what_is_wrong(data, words):
    view, problem = parse_eval(data)
    assert view is None and words in problem


def test_parse_eval_tolerates_wrong_types():
    data = {"threshold": "high", "gamma": "five", "speedup": None, "draft_cost": True,
            "accept_by_position": {"0.9": [1.0, "x", None, float("nan"), 0.5]},
            "prefix_length": {"0.9": ["not", "a", "dict"]}, "expected_accepted": 3}
    view, problem = parse_eval(data)
    assert problem is None
    assert view.by_position == [1.0, None, None, None, 0.5]
    assert view.gamma is None and view.speedup is None and view.draft_cost is None and view.prefix == {}


def test_read_eval_missing_and_garbage(tmp_path):
    assert read_eval(tmp_path) == (None, NO_EVAL)
    (tmp_path / "eval.json").write_text("{half")
    view, problem = read_eval(tmp_path)
    assert view is None and "not valid JSON" in problem
    (tmp_path / "eval.json").write_text("")
    assert "empty" in read_eval(tmp_path)[1]


def test_visible_positions_cuts_the_tail_of_zeros():
    assert visible_positions([CURVE_A], 5) == 8  # last non-negligible is k=7, one more
    assert visible_positions([CURVE_A, CURVE_B], 5) == 9
    assert visible_positions([[0.0] * 30], 5) == 5  # at least up to γ
    assert visible_positions([[0.5, 0.2]], 8) == 2  # never past the data


def test_parser_agrees_with_the_engine():
    """The engine's own accumulator on known prefix lengths, written and read back."""
    torch = pytest.importorskip("torch")
    from engine.evaluate import SpecDecodeAccumulator

    acc = SpecDecodeAccumulator([0.8, 0.9])
    # lengths at 0.9: 4, 2, 0, 4 (of 4 positions); at 0.8 everything is accepted
    cos = torch.tensor([[0.95] * 4, [0.95, 0.95, 0.85, 0.95], [0.85] * 4, [0.95] * 4])
    target = torch.zeros(4, 4, 2)
    target[..., 0] = 1.0
    pred = torch.stack([cos, (1 - cos ** 2).sqrt()], dim=-1)
    acc.update(pred.flatten(0, 1), target.flatten(0, 1), torch.ones(4, 4, dtype=torch.bool))
    result = json.loads(json.dumps(acc.compute(gamma=3, draft_cost=0.1)))
    view, problem = parse_eval(result)
    assert problem is None and view.tau == "0.9"
    assert view.by_position == pytest.approx([0.75, 0.75, 0.5, 0.5])
    assert view.expected_at_gamma == pytest.approx((3 + 2 + 0 + 3) / 4)
    assert view.speedup == pytest.approx((2.0 + 1) / 1.3)


def panel(app):
    from tui.widgets.acceptance import AcceptancePanel

    return app.main.query_one(AcceptancePanel)


async def test_selected_run_then_marked_runs_overlaid(runs, app_factory):
    a = make_run(runs, "L1", "L1_a", start=0.5)
    b = make_run(runs, "L2", "L2_b", start=1.0)
    make_run(runs, "L3", "L3_c", start=2.0)
    make_eval(a, CURVE_A, top=True)
    make_eval(b, CURVE_B)
    app = app_factory()
    async with app.run_test(size=(140, 44)) as pilot:
        assert await wait_for(pilot, lambda: app.main.leaderboard.table.row_count == 3)
        await pilot.press("p")
        assert await wait_for(pilot, lambda: list(panel(app).drawn) == ["L1_a"])
        assert panel(app).drawn["L1_a"] == pytest.approx(CURVE_A)
        text = screen_text(app)
        assert "E[min(L,5)] 2.90" in text and "speedup 2.60x (draft cost 0.1)" in text
        assert "top-1 0.500" in text and "acceptance by position @0.9" in text
        # mark a and b, then move to c (no eval.json): a line per marked run, c says why it has none
        await pilot.press("space", "down", "space", "down")
        assert await wait_for(pilot, lambda: set(panel(app).drawn) == {"L1_a", "L2_b"}
                              and panel(app).runs[0].name == "L3_c")
        assert await wait_for(pilot, lambda: "L3_c · no eval.json: the evaluation at the end failed" in screen_text(app))
        # the panel's data is set before its lines are drawn: wait for the screen, not a moment
        assert await wait_for(pilot, lambda: all(s in screen_text(app) for s in ("L1_a", "L2_b", "speedup 3.33x")))
        assert "speedup" in app.main.leaderboard.available()  # the leaderboard's eval columns too


async def test_threshold_key_steps_through_the_files_thresholds(runs, app_factory):
    a = make_run(runs, "L1", "L1_a", start=0.5)
    result = make_eval(a, CURVE_A)
    app = app_factory()
    async with app.run_test(size=(140, 44)) as pilot:
        assert await wait_for(pilot, lambda: app.main.leaderboard.table.row_count == 1)
        await pilot.press("p")
        assert await wait_for(pilot, lambda: "acceptance by position @0.9" in screen_text(app))
        await pilot.press("a")  # 0.9 -> 0.95: its own curve, and no speedup (that is 0.9's)
        assert await wait_for(pilot, lambda: "acceptance by position @0.95" in screen_text(app))
        assert panel(app).drawn["L1_a"] == pytest.approx(result["accept_by_position"]["0.95"])
        assert "(draft cost 0.1)" not in screen_text(app)  # the caption has no speedup
        await pilot.press("a")  # wraps around to the first threshold
        assert await wait_for(pilot, lambda: "acceptance by position @0.8" in screen_text(app))
        assert panel(app).drawn["L1_a"] == pytest.approx(result["accept_by_position"]["0.8"])


async def test_missing_and_garbage_eval_json(runs, app_factory):
    make_run(runs, "L1", "L1_none", start=0.5, state="running")
    bad = make_run(runs, "L1", "L1_bad", start=1.0)
    (bad / "eval.json").write_text("{garbage")
    app = app_factory()
    async with app.run_test(size=(120, 36)) as pilot:
        assert await wait_for(pilot, lambda: app.main.leaderboard.table.row_count == 2)
        await pilot.press("p")
        assert await wait_for(pilot, lambda: "no eval.json yet" in screen_text(app))
        assert panel(app).drawn == {}
        await pilot.press("down")
        assert await wait_for(pilot, lambda: "eval.json is not valid JSON" in screen_text(app))
        assert app.is_running and panel(app).drawn == {}


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "poll"])
async def test_eval_json_written_live_reaches_the_plot(runs, app_factory, poll):
    run = make_run(runs, "L1", "L1_live", state="running")
    app = app_factory(poll=poll)
    async with app.run_test(size=(120, 36)) as pilot:
        assert await wait_for(pilot, lambda: app.main.leaderboard.table.row_count == 1)
        await pilot.press("p")
        assert await wait_for(pilot, lambda: "no eval.json yet" in screen_text(app))
        write_json(run / "eval.json", eval_result(CURVE_B))  # atomic: arrives as a move
        assert await wait_for(pilot, lambda: panel(app).drawn.get("L1_live") == pytest.approx(CURVE_B))
        assert await wait_for(pilot, lambda: app.main.leaderboard.rows[str(run)].speedup is not None)
        # rewritten with a better curve: the plot follows
        write_json(run / "eval.json", eval_result([1.0] * 10))
        assert await wait_for(pilot, lambda: panel(app).drawn.get("L1_live") == [1.0] * 10)
        assert await wait_for(pilot, lambda: "E[min(L,5)] 5.00" in screen_text(app))


@pytest.mark.parametrize("state, settings, seed_format, words", [
    ("running", {}, False, "no eval.json yet"),
    ("cancelled", {}, False, "the run ended cancelled"),
    ("done", {"no_eval": True}, False, "trained with --no_eval"),
    ("done", {}, True, "the reference's runs have none"),
    ("done", {}, False, "the evaluation at the end failed"),
])
def test_a_run_without_eval_json_says_why(state, settings, seed_format, words):
    from engine.rundir.summary import RunSummary
    from engine.rundir.run import why_no_eval

    summary = RunSummary(run="r", path="/r", level="L1", state=state, seed_format=seed_format)
    assert words in why_no_eval(summary, {"settings": settings})
