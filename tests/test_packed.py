"""The packed format: lossless at fp32, compact, read transparently by loaders and the trainer."""

import json

import pytest
import torch

from engine.cli import main
from common.errors import DataError
from engine.data.dataset import open_dataset
from engine.data.inspect import inspect_dataset
from engine.data.loader import val_loader
from engine.data.pack import pack
from support import run_cli


def test_pack_is_lossless_at_fp32_and_compact(tmp_path, tiny_data):
    result = pack(tiny_data / "train", tmp_path / "p", "fp32")
    assert result["size_ratio"] < 1.0 and result["samples"] == 192
    source, packed = open_dataset(tiny_data / "train"), open_dataset(tmp_path / "p")
    assert packed.format == "packed" and packed.num_samples == source.num_samples
    for a, b in zip(val_loader(source, 16), val_loader(packed, 16)):
        assert torch.equal(a.index, b.index) and torch.equal(a.mask, b.mask)
        assert torch.equal(a.egpt, b.egpt) and torch.equal(a.vl, b.vl)
        assert b.egpt.dtype == torch.float32
    info = inspect_dataset(tmp_path / "p", deep=True)
    assert (info["format"], info["samples"], info["dtype"]) == ("packed", 192, "float32")
    assert info["tokens"] == inspect_dataset(tiny_data / "train")["tokens"]


def test_bf16_pack_halves_fp32_and_stays_close(tmp_path, tiny_data):
    full = pack(tiny_data / "val", tmp_path / "f", "fp32")
    half = pack(tiny_data / "val", tmp_path / "h", "bf16")
    assert half["packed_bytes"] < 0.55 * full["packed_bytes"]
    for a, b in zip(val_loader(open_dataset(tmp_path / "f"), 32), val_loader(open_dataset(tmp_path / "h"), 32)):
        torch.testing.assert_close(a.egpt, b.egpt, atol=0.05, rtol=0.01)


def history_of(root):
    return json.loads(next(root.glob("*/*/history.json")).read_text())


@pytest.mark.slow
def test_training_on_packed_matches_its_source(tmp_path, tiny_data):
    pack(tiny_data / "train", tmp_path / "pt", "fp32")
    pack(tiny_data / "val", tmp_path / "pv", "fp32")
    common = ["--level", "L4", "--num_epochs", "2", "--num_heads", "4", "--ffn_dim", "32", "--seed", "1", "--no_eval"]
    assert main(["train", "--train_data", str(tiny_data / "train"), "--val_data", str(tiny_data / "val"),
                 "--output_dir", str(tmp_path / "a"), *common]) == 0
    assert main(["train", "--train_data", str(tmp_path / "pt"), "--val_data", str(tmp_path / "pv"),
                 "--output_dir", str(tmp_path / "b"), *common]) == 0
    a, b = history_of(tmp_path / "a"), history_of(tmp_path / "b")
    for key in ("train_loss", "val_loss", "val_cos_sim", "val_accept_80", "val_consecutive_90"):
        assert b[key] == pytest.approx(a[key], abs=1e-5), key


def test_packed_bad_input(tmp_path, tiny_data):
    pack(tiny_data / "val", tmp_path / "p", "fp32")
    out = run_cli("data", "pack", tiny_data / "val", tmp_path / "p")
    assert out.returncode == 2 and "already exists" in out.stderr
    victim = tmp_path / "p" / "chunks" / "chunk_000000.vl.bin"
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(DataError, match="expected"):
        inspect_dataset(tmp_path / "p")
    victim.unlink()
    out = run_cli("data", "inspect", tmp_path / "p")
    assert out.returncode == 2 and "chunk_000000.vl.bin listed in index.json is missing" in out.stderr
