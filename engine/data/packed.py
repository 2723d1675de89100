"""The compact dataset format: no padding, tokens concatenated, memory-mappable raw arrays.

    DST/index.json                {"format": "packed", "version": 1, "dtype": "bfloat16", "hidden_dim": H,
                                   "total_samples": N, "total_tokens": T, "source": ..., "chunks": [
                                   {"name": "chunk_000000", "n_samples": n, "n_tokens": t, "max_len": m}, ...]}
    DST/chunks/<name>.egpt.bin    [t, H] raw little-endian values of `dtype` (drafter states, valid tokens only)
    DST/chunks/<name>.vl.bin      [t, H] verifier states
    DST/chunks/<name>.lens.bin    [n] int64 sequence lengths; sample i's tokens start at sum(lens[:i])

Raw arrays mapped with torch.from_file need no pickle at all; chunks keep the source's
granularity so the loaders prefetch them the same way.
"""

from __future__ import annotations

import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Callable

import torch

from adapters.errors import UserInputError
from engine.data.formats import Chunk, ChunkRef, DataError, Dataset, load_chunk, open_dataset
from engine.fileio import ReadError, atomic_writer, make_dirs, read_json, shared_tempdir, unwritable_dir, write_json

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SUFFIXES = (".egpt.bin", ".vl.bin", ".lens.bin")


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
        entries = index["chunks"]
        _dtype(dtype)
        refs, start = [], 0
        for entry in entries:
            name = str(entry["name"])
            if "/" in name or name.startswith("."):
                raise DataError(f"{path}/index.json: chunk name {name!r} is not a plain file name")
            refs.append(ChunkRef(path / "chunks" / name, int(entry["n_samples"]), start, kind="packed",
                                 n_tokens=int(entry["n_tokens"]), dtype=dtype, hidden_dim=hidden))
            start += int(entry["n_samples"])
        padded = max((int(entry["max_len"]) for entry in entries), default=0)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}/index.json is not a valid packed index ({exc}); re-run `adapter-engine data pack`") from None
    for ref in refs:  # every chunk's sizes and lengths now, so a bad one fails before a run starts
        for suffix in SUFFIXES:
            if not ref.path.with_name(ref.path.name + suffix).is_file():
                raise DataError(f"{path}: {ref.path.name}{suffix} listed in index.json is missing")
        load_packed_chunk(ref)
    return Dataset(path, "packed", refs, hidden, padded, dtype, index)


def _map(path: Path, count: int, dtype: torch.dtype) -> torch.Tensor:
    expected = count * torch.tensor([], dtype=dtype).element_size()
    if path.stat().st_size != expected:
        raise DataError(f"{path} holds {path.stat().st_size} bytes, expected {expected}; re-run `adapter-engine data pack`")
    if count == 0:
        return torch.empty(0, dtype=dtype)
    return torch.from_file(str(path), shared=False, size=count, dtype=dtype)


def load_packed_chunk(ref: ChunkRef) -> Chunk:
    """Map one packed chunk; the token tensors stay [T, H] with per-sample offsets."""
    dtype, hidden = _dtype(ref.dtype), ref.hidden_dim
    base = ref.path
    lens = _map(base.with_name(base.name + ".lens.bin"), ref.n_samples, torch.int64)
    if lens.numel() and (int(lens.min()) < 1 or int(lens.sum()) != ref.n_tokens):
        raise DataError(f"{base}: sequence lengths do not add up to the {ref.n_tokens} tokens in index.json")
    egpt = _map(base.with_name(base.name + ".egpt.bin"), ref.n_tokens * hidden, dtype).view(ref.n_tokens, hidden)
    vl = _map(base.with_name(base.name + ".vl.bin"), ref.n_tokens * hidden, dtype).view(ref.n_tokens, hidden)
    offsets = torch.cumsum(lens, 0) - lens
    return Chunk(egpt, vl, lens, torch.arange(ref.n_samples) + ref.first_index, offsets=offsets)


def _write_raw(tensor: torch.Tensor, path: Path) -> None:
    with atomic_writer(path) as handle:
        data = tensor.contiguous().view(torch.uint8).numpy()
        if sys.byteorder != "little":  # pragma: no cover
            raise UserInputError("packing needs a little-endian machine")
        handle.write(data.tobytes())


def _check_destination(src: Path, dst: Path, force: bool) -> None:
    """DST may be new, or (with --force) a dataset or an empty directory to replace; never the
    source, a directory around it, a directory inside it, a file, or anything else."""
    source, target = src.resolve(), dst.resolve()
    if target == source or target in source.parents or source in target.parents:
        raise UserInputError(f"{dst} and {src} overlap (one holds the other); pack into a new directory")
    problem = unwritable_dir(dst)
    if problem:
        raise UserInputError(f"cannot pack into {dst}: {problem}")
    if dst.exists():
        if not force:
            raise UserInputError(f"{dst} already exists; pass --force to overwrite it")
        if not (dst / "index.json").is_file() and any(dst.iterdir()):
            raise UserInputError(f"{dst} is not a dataset (no index.json) and not empty; refusing to replace it")


def pack(src: Path, dst: Path, dtype: str = "bf16", force: bool = False,
         progress: Callable[[str], None] = lambda line: None) -> dict:
    """Rewrite a dataset without padding. Built in a temp dir beside DST, then moved into place."""
    if dtype not in DTYPES:
        raise UserInputError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    dataset = open_dataset(src)
    if dataset.format == "packed":
        raise UserInputError(f"{src} is already packed")
    dst = Path(dst)
    _check_destination(Path(src), dst, force)
    created = make_dirs(dst.parent)
    staging = shared_tempdir(f".{dst.name}.pack-", dst.parent)
    try:
        (staging / "chunks").mkdir()
        entries, total_tokens = [], 0
        for i, ref in enumerate(dataset.chunks):
            chunk = load_chunk(ref, dataset.hidden_dim, mmap=True)
            mask = torch.arange(chunk.egpt.shape[1])[None, :] < chunk.seq_lens[:, None]
            name = f"chunk_{i:06d}"
            _write_raw(chunk.egpt[mask].to(DTYPES[dtype]), staging / "chunks" / f"{name}.egpt.bin")
            _write_raw(chunk.vl[mask].to(DTYPES[dtype]), staging / "chunks" / f"{name}.vl.bin")
            _write_raw(chunk.seq_lens.long(), staging / "chunks" / f"{name}.lens.bin")
            n_tokens = int(chunk.seq_lens.sum())
            entries.append({"name": name, "n_samples": len(chunk), "n_tokens": n_tokens,
                            "max_len": int(chunk.seq_lens.max())})
            total_tokens += n_tokens
            progress(f"packed chunk {i + 1}/{len(dataset.chunks)}")
        write_json(staging / "index.json", {
            "format": "packed", "version": 1, "dtype": str(DTYPES[dtype]).replace("torch.", ""),
            "hidden_dim": dataset.hidden_dim, "total_samples": dataset.num_samples, "total_tokens": total_tokens,
            "source": str(src), "chunks": entries, "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        })
        if dst.exists():  # a dataset or an empty directory (checked): set it aside, then drop it
            old = dst.with_name(f".{dst.name}.replaced-{staging.name}")
            dst.replace(old)
            staging.replace(dst)
            shutil.rmtree(old)
        else:
            staging.replace(dst)
    except OSError as exc:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise UserInputError(f"cannot write {dst}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    src_bytes = sum(f.stat().st_size for f in Path(src).rglob("*") if f.is_file()) if Path(src).is_dir() else Path(src).stat().st_size
    dst_bytes = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
    return {"source": str(src), "packed": str(dst), "dtype": dtype, "samples": dataset.num_samples,
            "tokens": total_tokens, "source_bytes": src_bytes, "packed_bytes": dst_bytes,
            "size_ratio": dst_bytes / src_bytes}
