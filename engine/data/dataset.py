"""Open any dataset and load its chunks: the one place that knows every format (torch-saved
chunked directories and single files in `formats`, the packed format in `packed`), and splits
a training set when no validation set is given."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from common.errors import DataError
from engine.data import packed
from engine.data.formats import Chunk, ChunkRef, Dataset, load_pt_chunk, open_chunked, open_single, samples_of


def open_dataset(path: str | Path) -> Dataset:
    """Open a chunked directory, a packed directory or a single .pt file (every chunk's shapes
    and lengths checked). A dataset without a sample is an error too."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset {path} does not exist; check the path or run `adapter-engine synth {path}`")
    if path.is_dir():
        dataset = packed.open_packed(path) if packed.is_packed(path) else open_chunked(path)
    else:
        dataset = open_single(path)
    if dataset.num_samples == 0:
        raise DataError(f"dataset {path} holds no samples; point at a dataset with data in it")
    return dataset


def load_chunk(ref: ChunkRef, expect_widths: tuple[int, int] | None = None, *, mmap: bool = False) -> Chunk:
    """Load and validate one chunk of any format; a split's subset is a view of its samples."""
    chunk = packed.load_packed_chunk(ref) if ref.kind == "packed" else load_pt_chunk(ref, expect_widths, mmap=mmap)
    return chunk if ref.subset is None else samples_of(chunk, ref.subset)


def split_train_val(train: Dataset, val_split: float, seed: int) -> tuple[Dataset, Dataset, str]:
    """Without separate validation data: a set of several chunks holds out its last chunk; a
    single file or a one-chunk set holds out a seeded random `val_split` of its samples. Either
    way no validation sample is ever trained on. Returns (train, val, what was done)."""
    if len(train.chunks) >= 2:
        head, tail = train.chunks[:-1], train.chunks[-1:]
        note = f"no --val_data: holding out the last chunk ({len(tail[0])} samples) of {train.path} for validation"
        return (replace(train, chunks=head), replace(train, chunks=tail), note)
    if not 0.0 < val_split < 1.0:
        raise DataError(f"--val_split must be between 0 and 1, got {val_split}")
    ref = train.chunks[0]
    n_val = max(1, int(round(ref.n_samples * val_split)))
    if n_val >= ref.n_samples:
        raise DataError(f"{train.path} has {ref.n_samples} samples: too few to split {val_split:.0%} off; pass --val_data")
    order = torch.randperm(ref.n_samples, generator=torch.Generator().manual_seed(seed)).tolist()
    val_ids, train_ids = tuple(sorted(order[:n_val])), tuple(sorted(order[n_val:]))
    note = f"no --val_data: splitting {n_val} of {ref.n_samples} samples ({val_split:.0%}) of {train.path} off for validation"
    return (replace(train, chunks=[replace(ref, subset=train_ids)]),
            replace(train, chunks=[replace(ref, subset=val_ids)]), note)
