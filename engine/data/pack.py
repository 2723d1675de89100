"""`adapter-engine data pack`: rewrite a dataset in the compact packed format (engine.data.packed
describes it): no padding, tokens concatenated, bf16 by default."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Callable

import torch

from common.errors import UserInputError
from common.fileio import make_dirs, shared_tempdir, unwritable_dir, write_json
from engine.data.dataset import load_chunk, open_dataset
from engine.data.packed import DTYPES, packed_index, write_chunk


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
            chunk = load_chunk(ref, dataset.widths, mmap=True)
            mask = torch.arange(chunk.egpt.shape[1])[None, :] < chunk.seq_lens[:, None]
            name = f"chunk_{i:06d}"
            entries.append(write_chunk(staging, name, chunk.egpt[mask].to(DTYPES[dtype]),
                                       chunk.vl[mask].to(DTYPES[dtype]), chunk.seq_lens))
            total_tokens += entries[-1]["n_tokens"]
            progress(f"packed chunk {i + 1}/{len(dataset.chunks)}")
        write_json(staging / "index.json", {
            **packed_index(DTYPES[dtype], dataset.widths, dataset.num_samples, total_tokens, entries),
            "source": str(src), "created": datetime.now().astimezone().isoformat(timespec="seconds")})
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
