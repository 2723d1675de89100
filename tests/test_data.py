"""Readers, loaders, inspection and synth: coverage, order, memory, prefetch and bad input."""

import json
import time
from pathlib import Path

import pytest
import torch

from support import make_synth, run_cli, wait_for
from common.errors import DataError
from engine.data.dataset import open_dataset, split_train_val
from engine.data.inspect import inspect_dataset
from engine.data.loader import ChunkedLoader, train_loader, val_loader


def indices(loader):
    return torch.cat([b.index for b in loader])


def test_every_train_sample_once_per_epoch(tiny_data):
    ds = open_dataset(tiny_data / "train")
    loader = train_loader(ds, batch_size=10, seed=3)
    for epoch in range(3):
        loader.set_epoch(epoch)
        seen = indices(loader)
        assert sorted(seen.tolist()) == list(range(ds.num_samples))


def test_validation_covers_every_sample_in_fixed_order(tiny_data):
    ds = open_dataset(tiny_data / "val")
    loader = val_loader(ds, batch_size=7)
    batches = list(loader)
    assert sum(b.mask.shape[0] for b in batches) == ds.num_samples
    assert indices(loader).tolist() == list(range(ds.num_samples))
    assert len(loader) == len(batches)


def test_order_depends_on_seed_and_epoch(tiny_data):
    ds = open_dataset(tiny_data / "train")
    a, b = train_loader(ds, 16, seed=1), train_loader(ds, 16, seed=1)
    assert torch.equal(indices(a), indices(b))
    b.set_epoch(1)
    assert not torch.equal(indices(a), indices(b))
    c = train_loader(ds, 16, seed=2)
    assert not torch.equal(indices(a), indices(c))


def test_batches_hold_the_valid_tokens_and_a_trimmed_mask(tiny_data):
    ds = open_dataset(tiny_data / "train")
    raw = torch.load(ds.chunks[0].path, weights_only=True)
    for ring in (0, 3):
        for batch in val_loader(ds, 8, reuse_buffers=ring):
            assert batch.mask.shape[1] == int(batch.seq_lens.max())
            assert torch.equal(batch.mask.sum(1), batch.seq_lens)
            assert batch.egpt.shape == (int(batch.seq_lens.sum()), ds.hidden_dim) == batch.vl.shape
            egpt, vl = batch.padded()
            for row, i in enumerate(batch.index.tolist()):
                if i < raw["seq_lens"].shape[0]:
                    n = int(raw["seq_lens"][i])
                    torch.testing.assert_close(egpt[row, :n], raw["egpt_hidden"][i, :n])
                    torch.testing.assert_close(vl[row, :n], raw["vl_hidden"][i, :n])
                    assert (egpt[row, n:] == 0).all()


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.slow
@pytest.mark.parametrize("ahead", [False, True])
def test_memory_stays_within_two_and_a_half_chunks(tmp_path, ahead):
    # 10 chunks of ~8.4 MB (64 samples x 64 x 256 x fp32 x 2 streams)
    make_synth(tmp_path, samples=640, val_samples=8, hidden_dim=256, max_seq=64, min_seq=60, chunk_size=64)
    ds = open_dataset(tmp_path / "train")
    chunk_bytes = ds.chunks[0].path.stat().st_size
    loader = train_loader(ds, batch_size=8, seed=0, reuse_buffers=3, gather_ahead=ahead)  # as the trainer runs it
    for _ in loader:  # warm up allocator and page cache
        pass
    loader.close()  # drops the chunk loaded ahead for epoch 1, which would inflate the base
    base = rss_bytes()
    peak = base
    for epoch in (1, 2):  # epoch 2 starts from the chunk loaded ahead during epoch 1
        loader.set_epoch(epoch)
        for _ in loader:
            peak = max(peak, rss_bytes())
    assert peak - base <= 2.5 * chunk_bytes + 8e6, (peak - base) / chunk_bytes


def test_prefetch_overlaps_with_a_slow_consumer(tmp_path, monkeypatch):
    from engine.data import loader as loader_module

    make_synth(tmp_path, samples=256, val_samples=8, hidden_dim=128, max_seq=32, chunk_size=64)
    ds = open_dataset(tmp_path / "train")
    started, real = [], loader_module.load_chunk
    monkeypatch.setattr(loader_module, "load_chunk", lambda ref, *a, **k: started.append(ref) or real(ref, *a, **k))
    loader = ChunkedLoader(ds, batch_size=64, shuffle=True)  # one batch a chunk
    for number, _ in enumerate(loader):
        # the consumer still holds chunk k: chunk k+1's load has begun without being asked for
        wait_for(lambda: len(started) >= min(number + 2, len(ds.chunks)))
    assert len(started) >= len(ds.chunks)  # (and the next epoch's first, loaded ahead)


def slow_gathers(monkeypatch, seconds):
    """Each batch's gather takes `seconds` longer; returns the list of gather start times."""
    from engine.data import loader as loader_module

    real, calls = loader_module._gather_tokens, []

    def gather(*args):
        calls.append(time.perf_counter())
        time.sleep(seconds / 2)  # two gathers (drafter, verifier) per batch
        return real(*args)

    monkeypatch.setattr(loader_module, "_gather_tokens", gather)
    return calls


@pytest.mark.parametrize("ahead", [False, True])
def test_time_spent_gathering_a_batch_counts_as_waiting(tiny_data, monkeypatch, ahead):
    slow_gathers(monkeypatch, 0.03)
    loader = train_loader(open_dataset(tiny_data / "train"), 16, seed=0, reuse_buffers=3, gather_ahead=ahead)
    batches = sum(1 for _ in loader)  # a consumer that needs no time at all
    loader.close()
    assert loader.wait_s >= 0.8 * 0.03 * batches


def test_batches_are_gathered_ahead_while_the_consumer_computes(tiny_data, monkeypatch):
    total = len(list(train_loader(open_dataset(tiny_data / "train"), 16, seed=0)))
    calls = slow_gathers(monkeypatch, 0.03)
    loader = train_loader(open_dataset(tiny_data / "train"), 16, seed=0, reuse_buffers=3, gather_ahead=True)
    for number, _ in enumerate(loader):
        # two gathers a batch: batch k+1's begin while the consumer still holds batch k
        wait_for(lambda: len(calls) >= 2 * min(number + 2, total))
    loader.close()
    assert len(calls) == 2 * total


@pytest.mark.parametrize("ahead", [False, True])
def test_an_abandoned_pass_stops_its_thread_and_the_next_pass_is_whole(tiny_data, ahead):
    import gc
    import threading

    ds = open_dataset(tiny_data / "train")
    loader = train_loader(ds, 16, seed=0, reuse_buffers=2, gather_ahead=ahead)
    for number, _ in enumerate(loader):
        if number == 2:
            break
    gc.collect()
    assert not [t for t in threading.enumerate() if t.name == "batch-prefetch"]
    loader.set_epoch(1)
    assert sorted(indices(loader).tolist()) == list(range(ds.num_samples))
    loader.close()


@pytest.mark.parametrize("ahead", [False, True])
def test_a_bad_chunk_mid_epoch_reaches_the_consumer(tmp_path, ahead):
    make_synth(tmp_path, samples=96, val_samples=8, hidden_dim=16, max_seq=6, chunk_size=32)
    dataset = open_dataset(tmp_path / "train")  # checks every chunk: the damage comes later
    (tmp_path / "train" / "chunks" / "chunk_000002.pt").write_bytes(b"not a torch file")
    loader = val_loader(dataset, 8, reuse_buffers=3, gather_ahead=ahead)
    drawn = []
    with pytest.raises(DataError, match="chunk_000002"):
        for batch in loader:
            drawn.append(batch)
    assert len(drawn) == 8  # the two good chunks' batches came first
    loader.close()


def test_next_epochs_first_chunk_is_loaded_ahead(tiny_data, monkeypatch):
    from engine.data import loader as loader_module

    loads = []
    real = loader_module.load_chunk
    monkeypatch.setattr(loader_module, "load_chunk", lambda ref, *a, **k: loads.append(ref) or real(ref, *a, **k))
    def slowly(loader):  # a consumer that holds the last batch until the next epoch's first chunk is loading
        batches, expected = [], len(loads) + chunks + (1 if not loads else 0)
        for batch in loader:
            batches.append(batch.index)
        wait_for(lambda: len(loads) >= expected)
        return torch.cat(batches)

    ds = open_dataset(tiny_data / "train")
    loader = train_loader(ds, batch_size=16, seed=3)
    chunks = len(ds.chunks)
    for epoch in (0, 1):  # with this seed, no epoch begins with the chunk the one before ended with
        assert loader.schedule(epoch + 1)[0].ref != loader.schedule(epoch)[-1].ref
    first = slowly(loader)
    assert len(loads) == chunks + 1  # every chunk, then epoch 1's first
    loader.set_epoch(1)
    second = slowly(loader)
    assert len(loads) == 2 * chunks + 1  # epoch 1 began with it, and loaded epoch 2's first
    loader.set_epoch(7)  # not the epoch guessed: the chunk loaded ahead is dropped, nothing changes
    assert sorted(indices(loader).tolist()) == sorted(first.tolist())
    fresh = train_loader(ds, batch_size=16, seed=3)
    fresh.set_epoch(1)
    assert torch.equal(indices(fresh), second)
    loader.close()


def test_a_one_chunk_split_is_kept_for_the_next_epoch_not_loaded_twice(tmp_path, tiny_data, monkeypatch):
    from engine.data import loader as loader_module

    raw = torch.load(tiny_data / "train" / "chunks" / "chunk_000000.pt", weights_only=True)
    path = tmp_path / "one.pt"
    torch.save({k: raw[k] for k in ("egpt_hidden", "vl_hidden", "seq_lens")}, path)
    train, _, _ = split_train_val(open_dataset(path), 0.25, 0)  # an in-memory subset copy
    loads = []
    real = loader_module.load_chunk
    monkeypatch.setattr(loader_module, "load_chunk",  # only this set's loads: other tests' loaders may be busy
                        lambda ref, *a, **k: (ref.path == path and loads.append(ref)) or real(ref, *a, **k))
    loader = train_loader(train, batch_size=8, seed=0)
    for epoch in range(3):
        loader.set_epoch(epoch)
        assert sorted(indices(loader).tolist()) == list(train.chunks[0].subset)
    assert len(loads) == 1
    loader.close()


def test_an_unplannable_next_epoch_does_not_fail_this_one(tiny_data):
    ds = open_dataset(tiny_data / "train")
    loader = train_loader(ds, batch_size=16, seed=0)
    plan = loader.schedule

    def only_epoch_0(epoch=None):  # as when a later chunk order leaves a rank too few samples
        if epoch not in (None, 0):
            raise ValueError("too few samples")
        return plan(epoch)

    loader.schedule = only_epoch_0
    assert sorted(indices(loader).tolist()) == list(range(ds.num_samples))
    loader.close()


def test_chunked_split_holds_out_last_chunk(tiny_data):
    ds = open_dataset(tiny_data / "train")
    train, val, note = split_train_val(ds, 0.1, 0)
    assert len(train.chunks) == 2 and val.chunks == ds.chunks[-1:]
    assert "holding out the last chunk" in note


def test_single_file_split(tmp_path, tiny_data):
    raw = torch.load(tiny_data / "train" / "chunks" / "chunk_000000.pt", weights_only=True)
    path = tmp_path / "one.pt"
    torch.save({k: raw[k] for k in ("egpt_hidden", "vl_hidden", "seq_lens")}, path)
    ds = open_dataset(path)
    train, val, note = split_train_val(ds, 0.25, 0)
    assert val.num_samples == 16 and train.num_samples == 48
    ids = sorted(indices(val_loader(train, 8)).tolist() + indices(val_loader(val, 8)).tolist())
    assert len(set(ids)) == 64


def test_synth_is_deterministic_and_passes_deep_inspect(tmp_path):
    a = make_synth(tmp_path / "a", samples=64, val_samples=16)
    b = make_synth(tmp_path / "b", samples=64, val_samples=16)
    ca = torch.load(a / "train/chunks/chunk_000000.pt", weights_only=True)
    cb = torch.load(b / "train/chunks/chunk_000000.pt", weights_only=True)
    assert torch.equal(ca["vl_hidden"], cb["vl_hidden"])
    info = inspect_dataset(a / "train", deep=True)
    assert info["samples"] == 64 and info["hidden_dim"] == 64 and info["checked"] == "deep"
    assert not list(tmp_path.glob("a/.synth-*"))


def test_synth_separates_copy_from_target(tiny_data):
    raw = torch.load(tiny_data / "val/chunks/chunk_000000.pt", weights_only=True)
    mask = torch.arange(raw["egpt_hidden"].shape[1])[None] < raw["seq_lens"][:, None]
    cos = torch.nn.functional.cosine_similarity(raw["egpt_hidden"][mask], raw["vl_hidden"][mask], dim=-1).mean()
    assert 0.4 < cos < 0.8  # copying the drafter states is clearly imperfect


def test_inspect_cli_json(tiny_data):
    out = run_cli("data", "inspect", tiny_data / "train", "--json", check=True)
    info = json.loads(out.stdout)
    assert (info["format"], info["samples"], info["chunks"], info["hidden_dim"]) == ("chunked", 192, 3, 64)
    assert info["bytes_on_disk"] > 0 and info["seq_len"]["max"] <= 12


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _chunk(ds: Path) -> Path:
    return ds / "chunks" / "chunk_000000.pt"


def _break(tmp_path, tiny_data, how):
    ds = _copy(tiny_data / "train", tmp_path / "ds")
    raw = torch.load(_chunk(ds), weights_only=True)
    if how == "missing":
        return tmp_path / "nope", "does not exist"
    if how == "no_index":
        (ds / "index.json").unlink()
        return ds, "has no index.json"
    if how == "index_garbage":
        (ds / "index.json").write_text("{not json")
        return ds, "not valid JSON"
    if how == "index_keys":
        (ds / "index.json").write_text(json.dumps({"total_samples": 3}))
        return ds, "non-empty 'chunks' list"
    if how == "chunk_missing":
        _chunk(ds).unlink()
        return ds, "chunk_000000.pt listed in index.json is missing"
    if how == "not_dict":
        torch.save([raw["egpt_hidden"]], _chunk(ds))
        return ds, "is not a dict with egpt_hidden, vl_hidden, seq_lens"
    if how == "shapes":
        raw["vl_hidden"] = raw["vl_hidden"][:, :-1]
        torch.save(raw, _chunk(ds))
        return ds, "must agree in samples and padded length"
    if how == "widths":  # a verifier width that is not the one index.json records
        raw["vl_hidden"] = raw["vl_hidden"][:, :, :32]
        torch.save(raw, _chunk(ds))
        return ds, "records hidden size 64 but the chunks hold 64→32"
    if how == "lens":
        raw["seq_lens"][0] = 99
        torch.save(raw, _chunk(ds))
        return ds, "seq_lens must lie in [1, 12]"
    if how == "pickle":
        raw["metadata"] = [Path("x")]
        torch.save(raw, _chunk(ds))
        return ds, "pickled Python objects"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["missing", "no_index", "index_garbage", "index_keys", "chunk_missing",
                                 "not_dict", "shapes", "widths", "lens", "pickle"])
def test_bad_input_is_one_line_exit_2(tmp_path, tiny_data, how):
    path, needle = _break(tmp_path, tiny_data, how)
    with pytest.raises(DataError, match=None) as info:
        inspect_dataset(path, deep=True)
    assert needle in str(info.value)
    out = run_cli("data", "inspect", path)
    assert out.returncode == 2 and needle in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_train_and_val_hidden_sizes_must_agree(tmp_path, tiny_data):
    other = make_synth(tmp_path / "other", samples=16, val_samples=16, hidden_dim=32)
    out = run_cli("train", "--train_data", tiny_data / "train", "--val_data", other / "val",
                  "--output_dir", tmp_path / "runs", "--num_epochs", "1")
    assert out.returncode == 2 and "hidden size 64 and val hidden size 32 differ" in out.stderr
    assert not (tmp_path / "runs").exists()


def test_recycled_buffers_give_the_same_batches(tiny_data):
    ds = open_dataset(tiny_data / "train")
    fresh = train_loader(ds, 24, seed=5)
    for recycled in (train_loader(ds, 24, seed=5, reuse_buffers=2),
                     train_loader(ds, 24, seed=5, reuse_buffers=2, gather_ahead=True)):
        compare_batches(fresh, recycled)
        recycled.close()
    fresh.close()


def compare_batches(fresh, recycled):
    for a, b in zip(fresh, recycled):  # each batch compared before the next is drawn
        assert torch.equal(a.index, b.index) and torch.equal(a.mask, b.mask)
        assert torch.equal(a.egpt, b.egpt) and torch.equal(a.vl, b.vl)


@pytest.mark.parametrize("ahead", [False, True])
def test_a_held_buffer_is_refilled_only_after_its_fence(tiny_data, ahead):
    """An asynchronous copy to the GPU may still read a batch's host buffers: the ring waits on
    the fence the copy leaves (device.to_device records a CUDA event) before refilling them."""
    events = []

    class Fence:
        def __init__(self, batch_number):
            self.batch_number = batch_number

        def synchronize(self):
            events.append(("waited", self.batch_number))

    loader = val_loader(open_dataset(tiny_data / "train"), 8, reuse_buffers=2, gather_ahead=ahead)
    for number, batch in enumerate(loader):
        events.append(("drawn", number))
        if number < 4:
            batch.hold(Fence(number))
    # batch n + 2 reuses batch n's slot: its fence is passed before that batch is drawn
    for n in range(4):
        assert events.index(("waited", n)) < events.index(("drawn", n + 2))
    assert not any(kind == "waited" and n >= 4 for kind, n in events)


@pytest.mark.parametrize("chunks, world, last", [(3, 2, 43), (4, 2, 43), (2, 3, 43), (1, 2, 43), (5, 4, 43),
                                                 (2, 2, 1)])
def test_ranks_share_every_sample_once_with_equal_steps(tmp_path, chunks, world, last):
    # `last`: samples in the last chunk; (2, 2, 1) leaves one rank a single sample by chunk
    make_synth(tmp_path, samples=50 * (chunks - 1) + last, val_samples=8, hidden_dim=16, max_seq=6, chunk_size=50)
    ds = open_dataset(tmp_path / "train")
    for epoch in range(2):
        seen, steps = [], []
        for rank in range(world):
            loader = train_loader(ds, 16, seed=1, rank=rank, world_size=world)
            loader.set_epoch(epoch)
            batches = list(loader)
            steps.append(len(batches))
            assert len(loader) == len(batches)
            seen.append(torch.cat([b.index for b in batches]))
        assert len(set(steps)) == 1, steps
        everything = torch.cat(seen).tolist()
        assert sorted(everything) == list(range(ds.num_samples))


def test_validation_batches_dealt_round_robin(tiny_data):
    ds = open_dataset(tiny_data / "train")
    single = [b.index for b in val_loader(ds, 10)]
    dealt = [[b.index for b in val_loader(ds, 10, rank=r, world_size=2)] for r in range(2)]
    assert [t.tolist() for t in dealt[0]] == [t.tolist() for t in single[0::2]]
    assert [t.tolist() for t in dealt[1]] == [t.tolist() for t in single[1::2]]


def test_validation_loader_leaves_no_prefetch_thread_behind(tiny_data):
    import threading

    def prefetchers():
        return {t for t in threading.enumerate() if t.name.startswith("chunk-prefetch") and t.is_alive()}

    before = prefetchers()
    assert len(list(val_loader(open_dataset(tiny_data / "val"), 16))) > 0
    assert prefetchers() <= before
