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


def test_bench_step_runs_both_sides_at_a_small_size():
    out = run_cli("bench", "step", "--levels", "L1,L4", "--hidden_dim", "64", "--samples", "32", "--val_samples", "16",
                  "--max_seq", "8", "--batch_size", "16", "--repeats", "1", "--peak_tflops", "1", "--json", check=True)
    result = json.loads(out.stdout)
    assert [row["level"] for row in result["levels"]] == ["L1", "L4"]
    assert all(row["ours"] > 0 and row["baseline"] > 0 for row in result["levels"])
    assert all(0 < row["ours_mfu"] < 1 and 0 < row["baseline_mfu"] < 1 for row in result["levels"])


def test_seed_style_model_computes_the_same_function(registry):
    import torch

    from adapters.registry import build_adapter
    from engine.bench.baseline import SeedStyleAdapter

    for key in ("L1", "L4", "L5"):
        torch.manual_seed(0)
        model = build_adapter(registry.level(key), 64, {"num_heads": 4, "ffn_dim": 32}).eval()
        egpt, vl = torch.randn(2, 6, 64), torch.randn(2, 6, 64)
        mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
        torch.testing.assert_close(SeedStyleAdapter(model)(egpt, vl, mask)[mask], model(egpt, vl, mask)[mask])


def test_seed_style_model_stays_on_its_models_device(registry):
    from adapters.registry import build_adapter
    from engine.bench.baseline import SeedStyleAdapter

    model = build_adapter(registry.level("L4"), 64, {"num_heads": 4}, device="meta")  # as a CUDA model would
    assert {p.device.type for p in SeedStyleAdapter(model).parameters()} == {"meta"}
