"""Speculative-decoding metrics on hand-built cosine patterns with known answers."""

import json

import pytest
import torch

from support import run_cli
from engine.cli import main
from engine.evaluate import SpecDecodeAccumulator


def vectors(cosines, lens):
    """Valid tokens of pred/target in 2-D with cos(pred_t, target_t) = cosines[b][t]; mask from lens."""
    c = torch.tensor(cosines, dtype=torch.float64)
    target = torch.zeros(*c.shape, 2, dtype=torch.float64)
    target[..., 0] = 1.0
    pred = torch.stack([c, torch.sqrt(1 - c ** 2)], dim=-1)
    mask = torch.arange(c.shape[1])[None, :] < torch.tensor(lens)[:, None]
    return pred[mask], target[mask], mask


def run(cosines, lens, thresholds=(0.9,), gamma=3, cost=0.1, head=None):
    acc = SpecDecodeAccumulator(list(thresholds), head)
    acc.update(*vectors(cosines, lens))
    return acc.compute(gamma, cost)


def test_all_accepted():
    r = run([[1.0] * 4, [1.0] * 4], [4, 4])
    assert r["accept_rate"]["0.9"] == 1.0
    assert r["prefix_length"]["0.9"] == {"mean": 4.0, "median": 4.0, "p90": 4.0}
    assert r["accept_by_position"]["0.9"] == [1.0, 1.0, 1.0, 1.0]
    assert r["expected_accepted"]["0.9"]["3"] == 3.0 and r["expected_accepted"]["0.9"]["8"] == 4.0
    assert r["speedup"] == pytest.approx((3 + 1) / (1 + 3 * 0.1))


def test_none_accepted():
    r = run([[0.0] * 3], [3])
    assert r["accept_rate"]["0.9"] == 0.0 and r["prefix_length"]["0.9"]["mean"] == 0.0
    assert r["accept_by_position"]["0.9"] == [0.0, 0.0, 0.0]
    assert r["speedup"] == pytest.approx(1 / 1.3)


def test_accept_then_reject_at_k():
    # sample 0 rejects at position 3 (k=2 accepted), later accepts do not extend the prefix;
    # sample 1 rejects immediately.
    r = run([[0.95, 0.95, 0.5, 0.95, 0.95], [0.5, 0.95, 0.95, 0.95, 0.95]], [5, 5])
    assert r["accept_rate"]["0.9"] == pytest.approx(8 / 10)
    assert r["prefix_length"]["0.9"]["mean"] == 1.0
    assert r["accept_by_position"]["0.9"] == [0.5, 0.5, 0.0, 0.0, 0.0]
    assert r["expected_accepted"]["0.9"]["1"] == 0.5 and r["expected_accepted"]["0.9"]["2"] == 1.0


def test_threshold_is_strict():
    r = run([[0.0, 0.0]], [2], thresholds=(0.0, -0.5))  # cos exactly 0: not > 0, but > -0.5
    assert r["accept_rate"]["0"] == 0.0 and r["accept_rate"]["-0.5"] == 1.0


def test_padding_never_counted():
    r = run([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0]], [2, 1])
    assert r["tokens"] == 3 and r["accept_rate"]["0.9"] == 1.0
    assert r["prefix_length"]["0.9"]["mean"] == 1.5  # lengths 2 and 1, not 4 and 1
    assert r["accept_by_position"]["0.9"][2:] == [0.0, 0.0]


def test_token_agreement_on_a_constructed_head():
    head = torch.eye(2, dtype=torch.float64)  # token 0 = x axis, token 1 = y axis
    # targets all point at token 0; pred points at token 0 while cos > 0.7071, at token 1 after.
    r = run([[0.99, 0.8, 0.6, 0.1]], [4], head=head)
    assert r["token_top1_match"] == pytest.approx(0.5)
    assert r["token_top5_match"] == 1.0  # only two tokens: the truth is always in the top 5


def test_p90_and_median():
    cos = [[1.0] * k + [0.0] * (10 - k) for k in range(10)]
    r = run(cos, [10] * 10)
    assert r["prefix_length"]["0.9"]["median"] == pytest.approx(4.5)
    assert r["prefix_length"]["0.9"]["p90"] == pytest.approx(torch.quantile(torch.arange(10.), 0.9).item())


@pytest.mark.slow
def test_trained_run_carries_eval_and_leaderboard_ranks_by_it(tmp_path, tiny_data):
    for level in ("L1", "B1"):
        assert main(["train", "--train_data", str(tiny_data / "train"), "--val_data", str(tiny_data / "val"),
                     "--output_dir", str(tmp_path), "--level", level, "--num_epochs", "2", "--num_heads", "4",
                     "--ffn_dim", "64", "--bottleneck_dim", "16", "--lm_head", str(tiny_data / "lm_head.pt")]) == 0
    evals = sorted(tmp_path.glob("*/*/eval.json"))
    assert len(evals) == 2
    result = json.loads(evals[0].read_text())
    assert {"accept_rate", "prefix_length", "accept_by_position", "expected_accepted", "speedup",
            "token_top1_match", "token_top5_match", "val_loss", "cos_sim"} <= set(result)
    rows = json.loads(run_cli("runs", tmp_path, "--json", "--sort", "speedup", check=True).stdout)
    speedups = [r["speedup"] for r in rows]
    assert all(s is not None for s in speedups) and speedups == sorted(speedups, reverse=True)
    assert rows[0]["level"] == "B1"  # reading the verifier's own states wins
    # re-evaluating from the CLI with other settings rewrites eval.json
    run_dir = evals[0].parent
    out = run_cli("eval", run_dir, "--gamma", "2", "--thresholds", "0.5,0.9", "--json", check=True)
    assert json.loads(out.stdout)["gamma"] == 2
    assert json.loads((run_dir / "eval.json").read_text())["thresholds"] == [0.5, 0.9]


def test_eval_scores_the_loss_and_cosine_as_training_does_and_runs_falls_back_on_them(tmp_path, tiny_data):
    """eval.json's val_loss and cos_sim are the trainer's own figures for the best checkpoint;
    a run without a history takes them from eval.json."""
    assert main(["train", "--train_data", str(tiny_data / "train"), "--val_data", str(tiny_data / "val"),
                 "--output_dir", str(tmp_path), "--level", "L1", "--num_epochs", "2", "--bottleneck_dim", "16",
                 "--batch_size", "64"]) == 0
    (run_dir,) = tmp_path.glob("L1/*")
    history = json.loads((run_dir / "history.json").read_text())
    result = json.loads(run_cli("eval", run_dir, "--json", check=True).stdout)
    best = min(range(len(history["val_loss"])), key=history["val_loss"].__getitem__)
    assert result["val_loss"] == pytest.approx(history["val_loss"][best], rel=1e-4)
    assert result["cos_sim"] == pytest.approx(history["val_cos_sim"][best], rel=1e-4)
    (run_dir / "history.json").unlink()
    (row,) = json.loads(run_cli("runs", tmp_path, "--json", check=True).stdout)
    assert row["best_val_loss"] == pytest.approx(result["val_loss"]) and row["cos_sim"] == pytest.approx(result["cos_sim"])


def test_eval_calibrates_its_estimate_with_the_costs_speculate_measured(tmp_path, tiny_data):
    from engine.rundir.speculation import write_speculation

    assert main(["train", "--train_data", str(tiny_data / "train"), "--val_data", str(tiny_data / "val"),
                 "--output_dir", str(tmp_path), "--level", "L1", "--num_epochs", "1", "--bottleneck_dim", "16"]) == 0
    (run_dir,) = tmp_path.glob("L1/*")
    fixed = json.loads(run_cli("eval", run_dir, "--json", "--gamma", "5", check=True).stdout)
    assert fixed["cost_source"] == "draft_cost" and fixed["verify_cost"] == 1.0
    # a draft costs half a decode step, a verification 1.5: the estimate must charge both
    write_speculation(run_dir, {"gamma": 5, "per_gamma": {"5": {
        "draft_ms_per_token": 1.0, "verify_ms_per_step": 3.0, "baseline_tokens_per_s": 500.0, "tau": 2.0,
        "speedup": 0.8}}})
    calibrated = json.loads(run_cli("eval", run_dir, "--json", "--gamma", "5", check=True).stdout)
    assert calibrated["cost_source"] == "speculate.json (γ=5)"
    assert calibrated["draft_cost"] == pytest.approx(0.5) and calibrated["verify_cost"] == pytest.approx(1.5)
    expected = calibrated["expected_accepted_at_gamma"]
    assert calibrated["speedup"] == pytest.approx((expected + 1) / (1.5 + 5 * 0.5))
    flagged = json.loads(run_cli("eval", run_dir, "--json", "--gamma", "5", "--draft_cost", "0.2", check=True).stdout)
    assert flagged["cost_source"] == "draft_cost" and flagged["draft_cost"] == 0.2  # a flag wins


def test_eval_bad_input(tmp_path):
    out = run_cli("eval", tmp_path / "nope")
    assert out.returncode == 2 and "does not exist" in out.stderr


def test_position_stats_are_the_references_marginal_acceptance():
    # position 0: cos 0.95 and 0.5 (one of two above 0.9); position 1: 0.95 and padding; position 2: 0.5
    r = run([[0.95, 0.95, 0.5], [0.5, 0.0, 0.0]], [3, 1])
    stats = r["position_stats"]
    assert [row["num_samples"] for row in stats] == [2, 1, 1]
    assert [row["accept_90"] for row in stats] == [0.5, 1.0, 0.0]  # marginal, unlike P(L >= k)
    assert r["accept_by_position"]["0.9"] == [0.5, 0.5, 0.0]
    assert stats[0]["mean"] == pytest.approx(0.725) and stats[0]["std"] == pytest.approx(torch.tensor([0.95, 0.5]).std().item())
    assert stats[1]["std"] is None  # one sample: no spread (the reference writes NaN, JSON has none)


def test_token_top10_agreement():
    head = torch.eye(2, dtype=torch.float64)
    r = run([[0.99, 0.1]], [2], head=head)
    assert r["token_top10_match"] == 1.0 and r["token_top1_match"] == 0.5


def test_the_references_speedup_estimates_with_its_timings():
    from engine.evaluate import reference_speedup

    r = reference_speedup(torch.full((4,), 10.0), gamma=5, timing={})  # every draft accepted up to 10
    assert r["gamma_prefill"] == 7 and r["decode_accepted"] == 5 and r["prefill_accepted"] == 7
    # the reference's own numbers for these timings: 180 ms of free drafting = 7.2 tokens
    assert r["speedup_prefill"] == pytest.approx(1 + 7.2 * 25 / 310)
    assert r["speedup_e2e"] == pytest.approx((310 + 50 * 25) / (310 + 50 / 6 * (6 * 25 + 1.5)))
    assert r["speedup_e2e_prefill_aware"] == pytest.approx((310 + 50 * 25) / (310 + 43 / 6 * (25 + 1.5)))
    slow = reference_speedup(torch.zeros(4), gamma=5, timing={"vl_per_token_ms": 50.0})
    assert slow["timing_ms"]["vl_per_token_ms"] == 50.0 and slow["speedup_prefill"] == 1.0


def test_eval_reports_the_reference_estimates_when_given_timings(tmp_path, tiny_data):
    assert main(["train", "--train_data", str(tiny_data / "train"), "--val_data", str(tiny_data / "val"),
                 "--output_dir", str(tmp_path), "--level", "L1", "--num_epochs", "1", "--bottleneck_dim", "8",
                 "--no_eval"]) == 0
    run_dir = next(tmp_path.glob("*/*"))
    out = run_cli("eval", run_dir, "--json", "--vl_prefill_ms", "400")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["reference_speedup"]["timing_ms"]["vl_prefill_ms"] == 400.0
    assert result["reference_speedup"]["timing_ms"]["egpt_prefill_ms"] == 130.0
    assert len(result["position_stats"]) == max(row["position"] for row in result["position_stats"]) + 1
    assert "reference_speedup" not in json.loads(run_cli("eval", run_dir, "--json").stdout)
