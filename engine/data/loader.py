"""Chunked loaders with background prefetch (SPEC §4, §9).

One chunk is consumed while the next loads in a background thread, so at most two chunks
(plus the batch in flight) are resident. Batches are built with tensor indexing, trimmed to
their longest sequence, with the mask built from seq_lens: no Python loop per sample.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import torch

from engine.data.formats import Chunk, ChunkRef, Dataset, load_chunk


@dataclass
class Batch:
    egpt: torch.Tensor       # [B, L, H], L = longest sequence in the batch
    vl: torch.Tensor         # [B, L, H]
    mask: torch.Tensor       # bool [B, L]
    seq_lens: torch.Tensor   # [B]
    index: torch.Tensor      # [B] global sample ids (position in the dataset)

    @property
    def num_tokens(self) -> int:
        return int(self.seq_lens.sum())

    def to(self, device: torch.device, non_blocking: bool = False) -> "Batch":
        if device.type == "cpu":
            return self
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(move(self.egpt), move(self.vl), move(self.mask), move(self.seq_lens), self.index)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Shuffling depends only on (seed, epoch): reproducible runs and exact resume."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def make_batch(chunk: Chunk, rows: torch.Tensor, pin: bool = False) -> Batch:
    """Gather `rows` of a chunk, trimmed to the longest of their sequences."""
    lens = chunk.seq_lens[rows]
    longest = int(lens.max())
    egpt = chunk.egpt[:, :longest].index_select(0, rows)
    vl = chunk.vl[:, :longest].index_select(0, rows)
    mask = torch.arange(longest)[None, :] < lens[:, None]
    if pin:
        egpt, vl, mask, lens = egpt.pin_memory(), vl.pin_memory(), mask.pin_memory(), lens.pin_memory()
    return Batch(egpt, vl, mask, lens, chunk.ids[rows] if chunk.ids is not None else rows)


class ChunkedLoader:
    """Iterates batches over a list of chunks with one chunk prefetched in the background.

    Args:
        dataset: the split to read.
        batch_size: samples per batch (the last batch of a chunk may be smaller).
        shuffle: shuffle chunk order and samples within chunks from (seed, epoch).
        seed: base seed for shuffling.
        rank, world_size: this process reads chunks rank, rank + world_size, ...
        pin_memory: pin host batches (for non-blocking copies to CUDA).
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1, pin_memory: bool = False) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pin_memory = pin_memory
        self.epoch = 0
        self.wait_s = 0.0  # time the consumer spent waiting for a chunk, this epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def chunk_order(self) -> list[ChunkRef]:
        chunks = self.dataset.chunks
        if self.shuffle:
            order = torch.randperm(len(chunks), generator=epoch_generator(self.seed, self.epoch)).tolist()
            chunks = [chunks[i] for i in order]
        return chunks[self.rank::self.world_size]

    def __len__(self) -> int:
        return sum(-(-len(ref) // self.batch_size) for ref in self.chunk_order())

    def _load(self, ref: ChunkRef) -> Chunk:
        return load_chunk(ref, self.dataset.hidden_dim)

    def __iter__(self) -> Iterator[Batch]:
        self.wait_s = 0.0
        refs = self.chunk_order()
        if not refs:
            return
        generator = epoch_generator(self.seed, self.epoch)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk-prefetch") as pool:
            pending = pool.submit(self._load, refs[0])
            for i in range(len(refs)):
                started = time.perf_counter()
                chunk = pending.result()
                self.wait_s += time.perf_counter() - started
                pending = pool.submit(self._load, refs[i + 1]) if i + 1 < len(refs) else None
                n = len(chunk)
                rows = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
                for start in range(0, n, self.batch_size):
                    yield make_batch(chunk, rows[start:start + self.batch_size], self.pin_memory)
                del chunk


def train_loader(dataset: Dataset, batch_size: int, seed: int, **kwargs) -> ChunkedLoader:
    return ChunkedLoader(dataset, batch_size, shuffle=True, seed=seed, **kwargs)


def val_loader(dataset: Dataset, batch_size: int, **kwargs) -> ChunkedLoader:
    """Every sample exactly once, in a fixed order."""
    return ChunkedLoader(dataset, batch_size, shuffle=False, **kwargs)
