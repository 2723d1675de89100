"""Chunked loaders with background prefetch, over the chunk formats of engine/data/formats.py.

Chunks are memory-mapped, so a batch copies only its own valid tokens; nothing else of the
chunk, and no padding, is copied. A background thread opens and validates the next chunk, asks
the kernel to read it ahead (POSIX_FADV_WILLNEED) and maps its pages, so the consumer waits
neither for the disk nor for page faults. For a GPU consumer a second thread also gathers the
batches a few ahead (`gather_ahead`): at H=4096 gathering 64 samples takes longer than the
training step itself. At most two chunks (plus the batches in flight) are mapped at any time.
Batches are built with tensor indexing, with the mask (trimmed to the batch's longest sequence)
built from seq_lens: no Python loop per sample. (Over 400 lines: the train and validation
loaders share this prefetch machinery, and splitting it would split its locking story.)
"""

from __future__ import annotations

import os
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import torch

from adapters.padding import Padding
from engine.data.dataset import load_chunk
from engine.data.formats import Chunk, ChunkRef, Dataset

PAGE_BYTES = 4096


@dataclass
class Batch:
    """A batch as the models take it: only the valid tokens, sample after sample, with the mask
    that places them in the padded [B, L] layout (adapters.padding). Padding is never copied,
    from the chunk or to the GPU."""

    egpt: torch.Tensor       # [T, Hd] drafter states of the valid tokens, in tensor[mask] order
    vl: torch.Tensor         # [T, Hv] verifier states
    mask: torch.Tensor       # bool [B, L], L = longest sequence in the batch
    seq_lens: torch.Tensor   # [B]
    index: torch.Tensor      # [B] global sample ids (position in the dataset)
    # Given an event (anything with .synchronize()), keeps the batch's reused host buffers from
    # being refilled before it completes: an asynchronous copy to the GPU may still read them.
    hold: Callable[[Any], None] | None = None

    @property
    def num_tokens(self) -> int:
        return self.egpt.shape[0]

    def padded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(egpt, vl) as [B, L, H], zeros at padded positions."""
        padding = Padding(self.mask)
        return padding.scatter(self.egpt), padding.scatter(self.vl)

    def to(self, device: torch.device, non_blocking: bool = False) -> "Batch":
        if device.type == "cpu":
            return self
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(move(self.egpt), move(self.vl), move(self.mask), move(self.seq_lens), self.index)


def read_ahead(path: Path) -> None:
    """Ask the kernel to start reading the whole file into the page cache, without waiting."""
    if not hasattr(os, "posix_fadvise"):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    finally:
        os.close(fd)


def fault_in(tensor: torch.Tensor) -> None:
    """Read one value per memory page, so the pages of a freshly mapped chunk are mapped by the
    prefetch thread instead of one page fault at a time in the consumer's gathers (a chunk's
    faults cost about as much as copying its valid tokens on the VMs we measured)."""
    if tensor.is_contiguous() and tensor.numel():
        tensor.view(-1)[:: max(1, PAGE_BYTES // tensor.element_size())].sum()


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Shuffling depends only on (seed, epoch): reproducible runs and exact resume."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class BufferRing:
    """A few preallocated token buffers, reused in turn.

    A fresh allocation per batch costs more than the copy into it: the kernel faults in and
    zeroes new pages (measured 20x the copy on these machines). Buffers are pinned when asked,
    which also saves a pinned allocation per batch on CUDA.

    A slot belongs to one batch from `acquire` until `release`: the loader releases a batch's
    slot when the consumer draws the next batch, so a consumer that finishes with a batch before
    drawing the next (the trainer) is safe. A slot whose batch may still be read by an
    asynchronous copy to the GPU also carries a fence (`hold`); it is refilled only once the
    fence is passed.
    """

    def __init__(self, size: int, pin: bool = False) -> None:
        if size < 2:  # one slot in the consumer's hands, one being filled
            raise ValueError(f"a buffer ring needs at least 2 slots, got {size}")
        self.size = size
        self.pin = pin
        self.slots: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * size
        self.fences: list[Any] = [None] * size
        self.free: queue.Queue[int] = queue.Queue()
        self.reset()

    def acquire(self, stop: threading.Event) -> int | None:
        """A free slot, once its fence is passed; None if `stop` is set while waiting."""
        while not stop.is_set():
            try:
                index = self.free.get(timeout=0.1)
            except queue.Empty:
                continue
            fence, self.fences[index] = self.fences[index], None
            if fence is not None:
                fence.synchronize()
            return index
        return None

    def buffers(self, index: int, tokens: int, widths: tuple[int, int], capacity: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Slot `index` as [tokens, Hd] and [tokens, Hv] float32 buffers; it grows to `capacity`
        rows when too small."""
        slot = self.slots[index]
        if slot is None or slot[0].shape[0] < tokens or (slot[0].shape[1], slot[1].shape[1]) != widths:
            make = lambda width: torch.empty(max(tokens, capacity), width, pin_memory=self.pin)  # noqa: E731
            slot = self.slots[index] = (make(widths[0]), make(widths[1]))
        return slot[0][:tokens], slot[1][:tokens]

    def hold(self, index: int, fence: Any) -> None:
        """Refill slot `index` only after `fence.synchronize()` returns."""
        self.fences[index] = fence

    def release(self, index: int) -> None:
        self.free.put(index)

    def reset(self) -> None:
        """Every slot free again (a new pass: no batch of the last one is in use; fences stay)."""
        self.free = queue.Queue()
        for index in range(self.size):
            self.free.put(index)


def _gather_tokens(source: torch.Tensor, flat: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """source[flat] as float32, into `out` when given (index_select needs matching dtypes)."""
    if out is None:
        return source.index_select(0, flat).float()
    if source.dtype == out.dtype:
        return torch.index_select(source, 0, flat, out=out)
    return out.copy_(source.index_select(0, flat))


def chunk_batches(chunk: Chunk, row_batches: list[torch.Tensor], pin: bool = False,
                  ring: BufferRing | None = None,
                  stop: threading.Event | None = None) -> Iterator[tuple[Batch, int | None]]:
    """The batches of one chunk, each gathering the valid tokens of its rows, with the ring slot
    each was gathered into (None without a ring). Stops early once `stop` is set.

    The token index of the whole chunk is built at once, with tensor ops, so each batch costs
    only its mask and two index_selects (per-batch index building cost as much as the copy).
    """
    if not row_batches:
        return
    stop = stop or threading.Event()
    # ascending rows within a batch: forward reads of the mapped file (order within a batch is irrelevant)
    rows = torch.cat([batch.sort().values for batch in row_batches])
    lens = chunk.seq_lens[rows]
    if chunk.offsets is not None:  # token layout: [T_chunk, H], sample i from offsets[i]
        egpt_source, vl_source, starts = chunk.egpt, chunk.vl, chunk.offsets[rows]
    else:                          # padded: sample i at rows i*S .. i*S + len - 1 of the flattened chunk
        egpt_source, vl_source = chunk.egpt.flatten(0, 1), chunk.vl.flatten(0, 1)
        starts = rows * chunk.egpt.shape[1]
    first_token = torch.cumsum(lens, 0) - lens  # where each sample's tokens begin in `flat`
    flat = torch.repeat_interleave(starts - first_token, lens) + torch.arange(int(lens.sum()))
    ids = chunk.ids[rows] if chunk.ids is not None else rows
    steps = torch.arange(int(lens.max()))
    widths, capacity = (egpt_source.shape[1], vl_source.shape[1]), max(len(b) for b in row_batches) * steps.shape[0]
    lens_list, sample, token = lens.tolist(), 0, 0
    for size in (len(b) for b in row_batches):
        batch_lens = lens[sample:sample + size]
        longest, count = max(lens_list[sample:sample + size]), sum(lens_list[sample:sample + size])
        mask = steps[None, :longest] < batch_lens[:, None]
        index = flat[token:token + count]
        out_egpt = out_vl = hold = slot = None
        if ring is not None:
            slot = ring.acquire(stop)
            if slot is None:
                return
            out_egpt, out_vl = ring.buffers(slot, count, widths, capacity)
            hold = partial(ring.hold, slot)
        egpt, vl = _gather_tokens(egpt_source, index, out_egpt), _gather_tokens(vl_source, index, out_vl)
        if pin and ring is None:  # ring buffers are pinned already
            egpt, vl = egpt.pin_memory(), vl.pin_memory()
        if pin:
            mask, batch_lens = mask.pin_memory(), batch_lens.pin_memory()
        yield Batch(egpt, vl, mask, batch_lens, ids[sample:sample + size], hold), slot
        sample, token = sample + size, token + count
        if stop.is_set():
            return


class Share(NamedTuple):
    """One chunk of a rank's epoch plan."""

    ref: ChunkRef
    batches: list[tuple[int, int]] | None  # (start, size) in the shuffled rows; None: consecutive batches
    position: int                          # the chunk's place in the epoch's chunk order
    strided: bool = False                  # ranks share every chunk sample by sample


def split_sizes(n: int, batches: int, batch_size: int) -> list[int]:
    """Sizes of `batches` batches covering n samples: full batches and a remainder when that
    is enough, otherwise (extra steps to match other ranks) near-equal sizes."""
    if batches == -(-n // batch_size):
        return [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    return [len(part) for part in torch.arange(n).tensor_split(batches)]


def _steps(shares: list[list[tuple[int, int]]], batch_size: int) -> int:
    """Steps of the busiest rank when each takes full batches of its (chunk, samples) shares."""
    return max(sum(-(-m // batch_size) for _, m in share) for share in shares)


class ChunkedLoader:
    """Iterates batches over a list of chunks: one chunk prefetched on a background thread and,
    with `gather_ahead`, a few batches gathered ahead on another.

    A loader holds at most two chunks: the one being gathered from and the next. A shuffled
    (training) loader's next chunk after an epoch's last is the following epoch's first, so an
    epoch does not start with a stall; `close()` drops it and stops the prefetch thread. Loaders
    that load nothing ahead (validation) stop their thread at the end of each pass. The batch
    thread lives for one pass; abandoning a pass (or `close()`) stops it.

    Args:
        dataset: the split to read.
        batch_size: samples per batch (the last batch of a chunk may be smaller).
        shuffle: shuffle chunk order and samples within chunks from (seed, epoch).
        seed: base seed for shuffling.
        rank, world_size: distributed sharding. Shuffled (training) loaders give each rank a
            disjoint share of the chunks (or, with fewer chunks than ranks, of each chunk's
            samples), split so that every rank takes the same number of steps and every sample
            is used exactly once per epoch across ranks. Unshuffled (validation) loaders deal
            the single-process batches out round-robin, so pooled sums equal one process's.
        pin_memory: pin host batches (for non-blocking copies to CUDA).
        reuse_buffers: if > 0 (at least 2), gather into a ring of that many preallocated buffers
            (see BufferRing): a batch is then valid only until the next one is drawn, and the
            batch thread runs at most that many batches ahead.
        gather_ahead: gather batches on a background thread while the consumer computes. For a
            GPU consumer, whose step leaves the host's cores idle; on the CPU the gathers would
            only compete with the step for the same cores (and the hand-over costs ~25 % of the
            loader's own throughput), so there they run when the consumer asks.
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1, pin_memory: bool = False, reuse_buffers: int = 0,
                 gather_ahead: bool = False) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pin_memory = pin_memory
        self.gather_ahead = gather_ahead
        self.ring = BufferRing(reuse_buffers, pin_memory) if reuse_buffers > 0 else None
        self.epoch = 0
        self.wait_s = 0.0  # time the consumer spent waiting for a batch, this epoch
        self._pool: ThreadPoolExecutor | None = None  # the prefetch thread, kept across passes
        self._ahead: tuple[tuple[int, ChunkRef], Future] | None = None  # next pass's first chunk
        self._batch_thread: tuple[threading.Thread, threading.Event] | None = None  # the running pass's

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _chunk_order(self, epoch: int) -> list[ChunkRef]:
        chunks = self.dataset.chunks
        if self.shuffle:
            order = torch.randperm(len(chunks), generator=epoch_generator(self.seed, epoch)).tolist()
            chunks = [chunks[i] for i in order]
        return chunks

    def _rows(self, epoch: int, position: int, n: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=epoch_generator(self.seed, epoch * 100_003 + position + 1))

    def schedule(self, epoch: int | None = None) -> list[Share]:
        """This rank's plan for an epoch (default: the current one), chunk by chunk. Depends only
        on seed, epoch, rank and world size."""
        epoch = self.epoch if epoch is None else epoch
        chunks, world, b = self._chunk_order(epoch), self.world_size, self.batch_size
        if world == 1 or not self.shuffle:
            return [Share(ref, None, i) for i, ref in enumerate(chunks)]
        whole = [[(i, len(ref)) for i, ref in enumerate(chunks) if i % world == r] for r in range(world)]
        strided = [[(i, len(range(r, len(ref), world))) for i, ref in enumerate(chunks)] for r in range(world)]
        shares, steps = whole, _steps(whole, b)
        # With fewer chunks than ranks, or chunks so uneven that a rank has fewer samples than the
        # busiest rank has steps, every rank takes a strided share of every chunk instead.
        is_strided = any(sum(m for _, m in share) < steps for share in whole)
        if is_strided:
            shares, steps = strided, _steps(strided, b)
            if any(sum(m for _, m in share) < steps for share in shares):
                raise ValueError(f"{self.dataset.path}: too few samples for {world} ranks at batch size {b}")
        mine = shares[self.rank]
        counts = [-(-m // b) for _, m in mine]
        extra, k = steps - sum(counts), 0
        while extra > 0:  # split some batches in two so this rank takes as many steps as the busiest
            if counts[k % len(counts)] < mine[k % len(counts)][1]:
                counts[k % len(counts)] += 1
                extra -= 1
            k += 1
        plan = []
        for (i, m), count in zip(mine, counts):
            sizes = split_sizes(m, count, b)
            starts = [sum(sizes[:j]) for j in range(len(sizes))]
            plan.append(Share(chunks[i], list(zip(starts, sizes)), i, is_strided))
        return plan

    def _batches_of(self, share: Share, n: int, epoch: int) -> Iterator[torch.Tensor]:
        rows = self._rows(epoch, share.position, n)
        if share.strided:
            rows = rows[self.rank::self.world_size]
        if share.batches is not None:
            for start, size in share.batches:
                yield rows[start:start + size]
            return
        for index, start in enumerate(range(0, len(rows), self.batch_size)):
            if self.shuffle or self.world_size == 1 or self._val_turn(share.position, index):
                yield rows[start:start + self.batch_size]

    def _val_turn(self, position: int, index: int) -> bool:
        """Validation batches are numbered in single-process order and dealt round-robin."""
        before = sum(-(-len(ref) // self.batch_size) for ref in self.dataset.chunks[:position])
        return (before + index) % self.world_size == self.rank

    def __len__(self) -> int:
        total = 0
        for share in self.schedule():
            if share.batches is not None:
                total += len(share.batches)
            else:
                n = -(-len(share.ref) // self.batch_size)
                total += n if self.shuffle or self.world_size == 1 else sum(
                    self._val_turn(share.position, i) for i in range(n))
        return total

    def _load(self, ref: ChunkRef) -> Chunk:
        for path in ref.files:
            read_ahead(path)
        chunk = load_chunk(ref, self.dataset.widths, mmap=True)
        fault_in(chunk.egpt)
        fault_in(chunk.vl)
        return chunk

    def _first_chunk(self, pool: ThreadPoolExecutor, epoch: int, ref: ChunkRef) -> Future:
        """The epoch's first chunk: the one loaded ahead at the end of the previous pass when it
        is the right one, else a fresh load."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == (epoch, ref):
            return ahead[1]
        if ahead is not None:
            ahead[1].cancel()  # a wrong guess (the epoch was not the next one)
        return pool.submit(self._load, ref)

    def close(self) -> None:
        """Stop the batch thread, drop the chunk loaded ahead and stop the prefetch thread (they
        restart if the loader is iterated again)."""
        self._stop_batches()
        if self._ahead is not None:
            self._ahead[1].cancel()
            self._ahead = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _stop_batches(self) -> None:
        if self._batch_thread is not None:
            thread, stop = self._batch_thread
            stop.set()
            thread.join()
            self._batch_thread = None

    def __iter__(self) -> Iterator[Batch]:
        """The epoch's batches. `wait_s` adds up the time spent here waiting for one: for a chunk
        to load, and for the batch's gather unless it was done ahead on the batch thread."""
        self._stop_batches()  # an abandoned earlier pass
        self.wait_s = 0.0
        if self.ring is not None:
            self.ring.reset()
        stop = threading.Event()
        entries = self._gathered_ahead(stop) if self.gather_ahead else self._produce(self.epoch, stop)
        held: int | None = None  # the ring slot of the batch in the consumer's hands
        try:
            while True:
                started = time.perf_counter()
                entry = next(entries, None)
                self.wait_s += time.perf_counter() - started
                if held is not None:  # the consumer is done with the batch before
                    self.ring.release(held)
                if entry is None:
                    return
                batch, held = entry
                yield batch
        finally:
            stop.set()
            self._stop_batches()

    def _gathered_ahead(self, stop: threading.Event) -> Iterator[tuple[Batch, int | None]]:
        """`_produce` run on the batch thread, up to `ring.size - 1` (else 2) batches ahead."""
        ready: queue.Queue = queue.Queue(maxsize=self.ring.size - 1 if self.ring is not None else 2)
        thread = threading.Thread(target=self._fill, args=(self.epoch, ready, stop), name="batch-prefetch",
                                  daemon=True)
        self._batch_thread = (thread, stop)
        thread.start()
        while True:
            batch, slot, error = ready.get()
            if error is not None:
                raise error
            if batch is None:
                return
            yield batch, slot

    def _fill(self, epoch: int, ready: queue.Queue, stop: threading.Event) -> None:
        """The batch thread: (batch, slot, None) entries, then (None, None, None) at the end or
        (None, None, the exception) on a failure."""
        try:
            for batch, slot in self._produce(epoch, stop):
                if not _put(ready, (batch, slot, None), stop):
                    return
            _put(ready, (None, None, None), stop)
        except BaseException as exc:  # handed to the consumer, which raises it
            _put(ready, (None, None, exc), stop)

    def _produce(self, epoch: int, stop: threading.Event) -> Iterator[tuple[Batch, int | None]]:
        plan = self.schedule(epoch)
        if not plan:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk-prefetch")
        pool = self._pool
        pending: Future | None = self._first_chunk(pool, epoch, plan[0].ref)
        for i, share in enumerate(plan):
            chunk = _result(pending, stop)
            if chunk is None:
                return
            pending = pool.submit(self._load, plan[i + 1].ref) if i + 1 < len(plan) else None
            if pending is None and self.shuffle:  # training: epoch + 1's first chunk, while this one is consumed
                self._load_ahead(pool, epoch + 1, share.ref, chunk)
            yield from chunk_batches(chunk, list(self._batches_of(share, len(chunk), epoch)),
                                     self.pin_memory, self.ring, stop)
            del chunk  # unmapped here, off the consumer's thread
            if stop.is_set():
                return
        if self._ahead is None:  # nothing loaded ahead (validation): the thread ends with the pass
            pool.shutdown(wait=True)
            self._pool = None

    def _load_ahead(self, pool: ThreadPoolExecutor, epoch: int, current: ChunkRef, chunk: Chunk) -> None:
        """Start loading `epoch`'s first chunk; `current` is the chunk being consumed now."""
        try:
            first = self.schedule(epoch)[0].ref
        except (ValueError, IndexError):  # that epoch cannot be planned: let it say so when it runs, not now
            return
        if first == current:  # the same chunk again (always, with one chunk): keep it, do not load it twice
            ready: Future = Future()
            ready.set_result(chunk)
            self._ahead = ((epoch, first), ready)
        else:
            self._ahead = ((epoch, first), pool.submit(self._load, first))


def _put(ready: queue.Queue, entry: tuple, stop: threading.Event) -> bool:
    """Queue `entry` unless `stop` is set first (the consumer went away)."""
    while not stop.is_set():
        try:
            ready.put(entry, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _result(future: Future, stop: threading.Event) -> Chunk | None:
    """The future's chunk, or None if `stop` is set first."""
    while not stop.is_set():
        try:
            return future.result(timeout=0.1)
        except FutureTimeout:
            continue
    return None


def train_loader(dataset: Dataset, batch_size: int, seed: int, **kwargs) -> ChunkedLoader:
    return ChunkedLoader(dataset, batch_size, shuffle=True, seed=seed, **kwargs)


def val_loader(dataset: Dataset, batch_size: int, **kwargs) -> ChunkedLoader:
    """Every sample exactly once, in a fixed order."""
    return ChunkedLoader(dataset, batch_size, shuffle=False, **kwargs)
