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
    from engine.data.formats import open_dataset
    from engine.data.loader import val_loader
    from engine.device import to_device

    ds = open_dataset(tiny_data / "val")
    cpu = [b.egpt.clone() for b in val_loader(ds, 16)]
    gpu = [b.egpt.cpu() for b in to_device(val_loader(ds, 16, pin_memory=True, reuse_buffers=3), torch.device("cuda"))]
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
