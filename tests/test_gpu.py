"""The GPU fast path. Skipped without CUDA; run on a lent GPU machine."""

import json

import pytest
import torch

from engine.cli import main

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_bf16_training_on_cuda(tmp_path, tiny_data):
    assert main(["train", "--train_data", str(tiny_data / "train"), "--val_data", str(tiny_data / "val"),
                 "--output_dir", str(tmp_path), "--level", "L4", "--num_epochs", "2", "--num_heads", "4",
                 "--device", "cuda"]) == 0
    run = next(tmp_path.glob("*/*"))
    config = json.loads((run / "config.json").read_text())
    assert config["precision"] == "bf16" and config["device"].startswith("cuda")
    assert json.loads((run / "status.json").read_text())["state"] == "done"


def test_side_stream_copies_deliver_the_same_batches(tiny_data):
    from engine.data.dataset import open_dataset
    from engine.data.loader import val_loader
    from engine.device import to_device

    ds = open_dataset(tiny_data / "val")
    cpu = [b.egpt.clone() for b in val_loader(ds, 16)]
    gpu = [b.egpt.cpu() for b in to_device(val_loader(ds, 16, pin_memory=True, reuse_buffers=3, gather_ahead=True), torch.device("cuda"))]
    assert all(torch.equal(a, b) for a, b in zip(cpu, gpu))


def test_fused_adamw_on_cuda():
    from engine.device import make_optimizer

    param = torch.nn.Parameter(torch.zeros(3, device="cuda"))
    assert make_optimizer([param], 1e-3, torch.device("cuda")).defaults["fused"] is True


def test_bench_step_on_cuda_reports_mfu():
    from engine.bench.step import bench_step

    result = bench_step(["L1", "L4"], hidden_dim=256, samples=64, val_samples=32, max_seq=16, batch_size=16,
                        repeats=1, device="cuda", peak_tflops=100.0)
    assert all(row["ours"] > 0 and "ours_mfu" in row for row in result["levels"])


def _validate(model, data, precision):
    from adapters.losses import batch_objective
    from engine.data.loader import val_loader
    from engine.device import autocast, to_device
    from engine.metrics import MetricAccumulator

    device, metrics = torch.device("cuda"), MetricAccumulator()
    with torch.no_grad():
        for batch in to_device(val_loader(data, 16, pin_memory=True, reuse_buffers=3, gather_ahead=True), device):
            with autocast(precision, device):
                objective = batch_objective(model, model.predicts_next, batch.egpt, batch.vl, batch.mask)
            assert objective.loss.dtype == objective.cosine.dtype == torch.float32
            metrics.update(objective, batch.mask)
    return metrics.compute()


@pytest.mark.parametrize("level", ["L1", "L4", "L5F"])
def test_bf16_metrics_are_within_1e2_of_fp32_on_the_same_weights(tiny_data, registry, level):
    from adapters.registry import build_adapter
    from engine.data.dataset import open_dataset

    torch.manual_seed(0)
    model = build_adapter(registry.level(level), 64, {"num_heads": 4}).cuda().eval()
    data = open_dataset(tiny_data / "val")
    fp32, bf16 = _validate(model, data, "fp32"), _validate(model, data, "bf16")
    assert fp32.keys() == bf16.keys()
    # the accepted prefix is counted in tokens: compare it as a fraction of the mean sample length,
    # like the rates (one sample's prefix moving by a token moves the mean by 1/64 of a token)
    mean_len = _mean_length(data)
    for metrics in (fp32, bf16):
        metrics["val_consecutive_90"] /= mean_len
    for key in fp32:
        assert bf16[key] == pytest.approx(fp32[key], abs=1e-2), key


def _mean_length(data):
    from engine.data.loader import val_loader

    lengths = torch.cat([batch.seq_lens for batch in val_loader(data, 64)])
    return lengths.double().mean().item()


def test_compiled_training_on_cuda(tmp_path, tiny_data):
    assert main(["train", "--train_data", str(tiny_data / "train"), "--val_data", str(tiny_data / "val"),
                 "--output_dir", str(tmp_path), "--level", "L4", "--num_epochs", "2", "--num_heads", "4",
                 "--device", "cuda", "--compile", "--no_eval"]) == 0
    run = next(tmp_path.glob("*/*"))
    history = json.loads((run / "history.json").read_text())
    assert len(history["val_loss"]) == 2 and all(v == v for v in history["val_loss"])


def test_eval_on_cuda_writes_eval_json(tmp_path, tiny_data):
    assert main(["train", "--train_data", str(tiny_data / "train"), "--val_data", str(tiny_data / "val"),
                 "--output_dir", str(tmp_path), "--level", "L5", "--num_epochs", "1", "--num_heads", "4",
                 "--device", "cuda", "--lm_head", str(tiny_data / "lm_head.pt")]) == 0
    run = next(tmp_path.glob("*/*"))
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["samples"] == 64 and 0 <= evaluation["token_top1_match"] <= 1
