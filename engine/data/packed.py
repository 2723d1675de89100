"""The compact dataset format (its reader and its chunk writer; `engine.data.pack` and
`engine.extract` write it): no padding, tokens concatenated, memory-mappable raw arrays.

    DST/index.json                {"format": "packed", "version": 1, "dtype": "bfloat16", "hidden_dim": Hv,
                                   "drafter_dim": Hd (absent: Hd = Hv),
                                   "total_samples": N, "total_tokens": T, "source": ..., "chunks": [
                                   {"name": "chunk_000000", "n_samples": n, "n_tokens": t, "max_len": m}, ...]}
    DST/chunks/<name>.egpt.bin    [t, Hd] raw little-endian values of `dtype` (drafter states, valid tokens only)
    DST/chunks/<name>.vl.bin      [t, Hv] verifier states
    DST/chunks/<name>.lens.bin    [n] int64 sequence lengths; sample i's tokens start at sum(lens[:i])

Raw arrays mapped with torch.from_file need no pickle at all; chunks keep the source's
granularity so the loaders prefetch them the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from common.errors import DataError
from common.fileio import ReadError, atomic_writer, read_json
from engine.data.formats import PACKED_SUFFIXES, Chunk, ChunkRef, Dataset

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _write_raw(tensor: torch.Tensor, path: Path) -> None:
    if sys.byteorder != "little":  # pragma: no cover
        raise DataError("the packed format needs a little-endian machine")
    with atomic_writer(path) as handle:
        handle.write(tensor.contiguous().view(torch.uint8).numpy().tobytes())


def write_chunk(directory: Path, name: str, egpt: torch.Tensor, vl: torch.Tensor, seq_lens: torch.Tensor) -> dict:
    """One packed chunk (tokens [t, H] of the dtype wanted, lengths [n]) under DIR/chunks/;
    returns its index entry."""
    for tensor, suffix in ((egpt, "egpt"), (vl, "vl"), (seq_lens.long(), "lens")):
        _write_raw(tensor, directory / "chunks" / f"{name}.{suffix}.bin")
    return {"name": name, "n_samples": len(seq_lens), "n_tokens": int(seq_lens.sum()), "max_len": int(seq_lens.max())}


def packed_index(dtype: torch.dtype, widths: tuple[int, int], total_samples: int, total_tokens: int,
                 chunks: list[dict]) -> dict:
    """index.json of a packed dataset at widths (Hd, Hv) (writers add their own keys: source, created, ...)."""
    return {"format": "packed", "version": 1, "dtype": str(dtype).replace("torch.", ""), "hidden_dim": widths[1],
            "drafter_dim": widths[0], "total_samples": total_samples, "total_tokens": total_tokens, "chunks": chunks}


def is_packed(path: Path) -> bool:
    try:
        return read_json(path / "index.json").get("format") == "packed"
    except (ReadError, AttributeError):
        return False


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or dtype not in DTYPES.values():
        raise DataError(f"packed index names dtype {name!r}; expected one of float32, bfloat16, float16")
    return dtype


def open_packed(path: Path) -> Dataset:
    index = read_json(path / "index.json")
    try:
        hidden, dtype = int(index["hidden_dim"]), index["dtype"]
        drafter = int(index.get("drafter_dim", hidden))
        if min(hidden, drafter) < 1:
            raise ValueError("hidden sizes must be >= 1")
        entries = index["chunks"]
        _dtype(dtype)
        refs, start = [], 0
        for entry in entries:
            name = str(entry["name"])
            if "/" in name or name.startswith("."):
                raise DataError(f"{path}/index.json: chunk name {name!r} is not a plain file name")
            refs.append(ChunkRef(path / "chunks" / name, int(entry["n_samples"]), start, kind="packed",
                                 n_tokens=int(entry["n_tokens"]), dtype=dtype, hidden_dim=hidden, drafter_dim=drafter))
            start += int(entry["n_samples"])
        padded = max((int(entry["max_len"]) for entry in entries), default=0)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}/index.json is not a valid packed index ({exc}); re-run `adapter-engine data pack`") from None
    for ref in refs:  # every chunk's sizes and lengths now, so a bad one fails before a run starts
        for suffix in PACKED_SUFFIXES:
            if not ref.path.with_name(ref.path.name + suffix).is_file():
                raise DataError(f"{path}: {ref.path.name}{suffix} listed in index.json is missing")
        load_packed_chunk(ref)
    return Dataset(path, "packed", refs, hidden, padded, dtype, index, drafter_dim=drafter)


def _map(path: Path, count: int, dtype: torch.dtype) -> torch.Tensor:
    expected = count * torch.tensor([], dtype=dtype).element_size()
    if path.stat().st_size != expected:
        raise DataError(f"{path} holds {path.stat().st_size} bytes, expected {expected}; re-run `adapter-engine data pack`")
    if count == 0:
        return torch.empty(0, dtype=dtype)
    return torch.from_file(str(path), shared=False, size=count, dtype=dtype)


def load_packed_chunk(ref: ChunkRef) -> Chunk:
    """Map one packed chunk; the token tensors stay [T, Hd] and [T, Hv] with per-sample offsets."""
    dtype, hidden, drafter = _dtype(ref.dtype), ref.hidden_dim, ref.drafter_dim or ref.hidden_dim
    base = ref.path
    lens = _map(base.with_name(base.name + ".lens.bin"), ref.n_samples, torch.int64)
    if lens.numel() and (int(lens.min()) < 1 or int(lens.sum()) != ref.n_tokens):
        raise DataError(f"{base}: sequence lengths do not add up to the {ref.n_tokens} tokens in index.json")
    egpt = _map(base.with_name(base.name + ".egpt.bin"), ref.n_tokens * drafter, dtype).view(ref.n_tokens, drafter)
    vl = _map(base.with_name(base.name + ".vl.bin"), ref.n_tokens * hidden, dtype).view(ref.n_tokens, hidden)
    offsets = torch.cumsum(lens, 0) - lens
    return Chunk(egpt, vl, lens, torch.arange(ref.n_samples) + ref.first_index, offsets=offsets)
