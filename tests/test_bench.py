"""The bench suite runs (as a check that it works, not as a timing gate)."""

import json

from support import run_cli


def test_bench_loader_reports_both_sides(tiny_data):
    out = run_cli("bench", "loader", tiny_data / "train", "--repeats", "1", "--json", check=True)
    result = json.loads(out.stdout)
    assert result["ours"] > 0 and result["baseline"] > 0
    assert abs(result["ratio"] - result["ours"] / result["baseline"]) < 1e-9


def test_bench_metrics_agree_and_report(tmp_path):
    out = run_cli("bench", "metrics", "--batch", "4", "--seq", "8", "--hidden_dim", "16", "--batches", "2",
                  "--repeats", "1", "--json", check=True)
    result = json.loads(out.stdout)
    assert result["unit"] == "tokens/s" and result["ratio"] > 0
