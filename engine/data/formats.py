"""The dataset types, and the reader of the torch-saved formats: a chunked directory
(index.json + chunks/*.pt) or a single .pt file holding egpt_hidden, vl_hidden and seq_lens.
Every chunk is validated on load, and every problem is a DataError naming the file and the fix.
Open a dataset of any format with `engine.data.dataset.open_dataset`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from adapters.checkpoint import safe_load
from common.errors import CheckpointError, DataError
from common.fileio import ReadError, read_json
from common.text import widths_text

TENSOR_KEYS = ("egpt_hidden", "vl_hidden", "seq_lens")
PACKED_SUFFIXES = (".egpt.bin", ".vl.bin", ".lens.bin")  # a packed chunk's three files (engine.data.packed)


@dataclass
class Chunk:
    """Tensors of one chunk (or of a subset of it)."""

    egpt: torch.Tensor      # [N, S, Hd] float (drafter states)
    vl: torch.Tensor        # [N, S, Hv] float (verifier states)
    seq_lens: torch.Tensor  # [N] int64
    ids: torch.Tensor | None = None  # [N] position of each sample in the whole dataset
    offsets: torch.Tensor | None = None  # token layout (packed, or a subset): egpt/vl are [T, H], sample i at offsets[i]

    def __len__(self) -> int:
        return self.seq_lens.shape[0]


@dataclass(frozen=True)
class ChunkRef:
    """Where a chunk lives, and optionally which of its samples belong to this split."""

    path: Path
    n_samples: int
    first_index: int
    subset: tuple[int, ...] | None = None
    kind: str = "pt"          # "pt": a torch-saved chunk; "packed": raw arrays (engine.data.packed)
    n_tokens: int = 0
    dtype: str = ""
    hidden_dim: int = 0   # packed chunks: the verifier's width Hv ...
    drafter_dim: int = 0  # ... and the drafter's Hd

    @property
    def files(self) -> list[Path]:
        if self.kind == "packed":
            return [self.path.with_name(self.path.name + suffix) for suffix in PACKED_SUFFIXES]
        return [self.path]

    def __len__(self) -> int:
        return len(self.subset) if self.subset is not None else self.n_samples


@dataclass
class Dataset:
    path: Path
    format: str                 # "chunked" | "single"
    chunks: list[ChunkRef]
    hidden_dim: int             # the verifier's width Hv (vl_hidden), which adapters map to
    padded_len: int
    dtype: str
    index: dict = field(default_factory=dict)
    drafter_dim: int = 0        # the drafter's width Hd (egpt_hidden); 0 = hidden_dim

    def __post_init__(self) -> None:
        self.drafter_dim = self.drafter_dim or self.hidden_dim

    @property
    def widths(self) -> tuple[int, int]:
        """(Hd, Hv): the drafter's and the verifier's hidden sizes."""
        return self.drafter_dim, self.hidden_dim

    @property
    def num_samples(self) -> int:
        return sum(len(c) for c in self.chunks)


def validate_chunk(obj: object, where: str, expect_widths: tuple[int, int] | None = None) -> Chunk:
    """Check a loaded chunk dict: the three tensors, agreeing shapes (the two hidden sizes may
    differ: drafter Hd, verifier Hv), lengths within bounds."""
    if not isinstance(obj, dict) or not all(k in obj for k in TENSOR_KEYS):
        raise DataError(f"{where} is not a dict with {', '.join(TENSOR_KEYS)}; re-export it in the format of docs/CONTRACT.md (Data)")
    egpt, vl, lens = (obj[k] for k in TENSOR_KEYS)
    if not all(isinstance(t, torch.Tensor) for t in (egpt, vl, lens)):
        raise DataError(f"{where}: {', '.join(TENSOR_KEYS)} must all be tensors")
    if egpt.dim() != 3 or not egpt.is_floating_point() or not vl.is_floating_point():
        raise DataError(f"{where}: egpt_hidden must be a float tensor [N, S, H], got {egpt.dtype} {tuple(egpt.shape)}")
    if vl.dim() != 3 or egpt.shape[:2] != vl.shape[:2]:
        raise DataError(f"{where}: egpt_hidden {tuple(egpt.shape)} and vl_hidden {tuple(vl.shape)} must agree in "
                        "samples and padded length")
    if lens.dim() != 1 or lens.shape[0] != egpt.shape[0] or lens.is_floating_point():
        raise DataError(f"{where}: seq_lens must be an integer tensor [N] with N={egpt.shape[0]}, got {lens.dtype} {tuple(lens.shape)}")
    if lens.numel() and (int(lens.min()) < 1 or int(lens.max()) > egpt.shape[1]):
        raise DataError(f"{where}: seq_lens must lie in [1, {egpt.shape[1]}] (the padded length), "
                        f"found {int(lens.min())}..{int(lens.max())}")
    if expect_widths is not None and (egpt.shape[2], vl.shape[2]) != tuple(expect_widths):
        raise DataError(f"{where}: hidden size {widths_text(egpt.shape[2], vl.shape[2])} differs from the dataset's "
                        f"{widths_text(*expect_widths)}; re-export this chunk")
    return Chunk(egpt, vl, lens.long())


def load_pt_chunk(ref: ChunkRef, expect_widths: tuple[int, int] | None = None, *, mmap: bool = False) -> Chunk:
    """Load and validate one torch-saved chunk (weights_only; memory-mapped when asked)."""
    try:
        obj = safe_load(ref.path, mmap=mmap)
    except CheckpointError as exc:
        raise DataError(str(exc)) from None
    chunk = validate_chunk(obj, str(ref.path), expect_widths)
    if len(chunk) != ref.n_samples:
        raise DataError(f"{ref.path} holds {len(chunk)} samples but index.json says {ref.n_samples}")
    chunk.ids = torch.arange(len(chunk)) + ref.first_index
    return chunk


def chunk_widths(chunk: Chunk) -> tuple[int, int]:
    """(Hd, Hv) of a chunk in either layout."""
    return int(chunk.egpt.shape[-1]), int(chunk.vl.shape[-1])


def samples_of(chunk: Chunk, subset: tuple[int, ...]) -> Chunk:
    """The samples `subset` of a chunk, as a view in the token layout: nothing is copied."""
    keep = torch.tensor(subset, dtype=torch.long)
    if chunk.offsets is None:  # padded [N, S, H]: sample i starts at row i * S of the flattened chunk
        return Chunk(chunk.egpt.flatten(0, 1), chunk.vl.flatten(0, 1), chunk.seq_lens[keep], chunk.ids[keep],
                     offsets=keep * chunk.egpt.shape[1])
    return Chunk(chunk.egpt, chunk.vl, chunk.seq_lens[keep], chunk.ids[keep], offsets=chunk.offsets[keep])


def open_chunked(path: Path) -> Dataset:
    index_path = path / "index.json"
    if not index_path.is_file():
        raise DataError(f"{path} has no index.json; point at a chunked dataset directory or a .pt file")
    try:
        index = read_json(index_path)
    except ReadError as exc:
        raise DataError(f"{path}: {exc}; regenerate the dataset's index") from None
    if not isinstance(index, dict) or not isinstance(index.get("chunks"), list) or not index["chunks"]:
        raise DataError(f"{index_path} must be an object with a non-empty 'chunks' list")
    refs: list[ChunkRef] = []
    start = 0
    root = path.resolve()
    for i, entry in enumerate(index["chunks"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not isinstance(entry.get("n_samples"), int):
            raise DataError(f"{index_path}: chunks[{i}] needs 'path' (string) and 'n_samples' (int)")
        rel = entry["path"]
        candidates = [path / "chunks" / rel, path / rel]
        chunk_path = next((c for c in candidates if c.is_file()), None)
        if chunk_path is None:
            raise DataError(f"{path}: chunk {rel} listed in index.json is missing (looked in chunks/)")
        if root not in chunk_path.resolve().parents:
            raise DataError(f"{index_path}: chunk path {rel!r} points outside the dataset directory")
        refs.append(ChunkRef(chunk_path, entry["n_samples"], start))
        start += entry["n_samples"]
    total = index.get("total_samples")
    if total is not None and total != start:
        raise DataError(f"{index_path}: total_samples is {total} but the chunks hold {start}")
    # Every chunk's header now (memory-mapped: shapes, lengths, counts), so a bad chunk fails the
    # run before it starts, not hours in. Values (NaN/Inf) are `data inspect --deep`'s.
    first = load_pt_chunk(refs[0], mmap=True)
    widths = chunk_widths(first)
    recorded = (index.get("drafter_dim"), index.get("hidden_dim"))
    if any(isinstance(w, int) for w in recorded) and recorded != widths:
        raise DataError(f"{index_path} records hidden size {widths_text(*recorded)} but the chunks hold "
                        f"{widths_text(*widths)}; regenerate the dataset's index")
    for ref in refs[1:]:
        chunk = load_pt_chunk(ref, widths, mmap=True)
        if chunk.egpt.dtype != first.egpt.dtype:
            raise DataError(f"{ref.path}: {chunk.egpt.dtype} differs from the first chunk's {first.egpt.dtype}; "
                            "re-export it")
        del chunk
    return Dataset(path, "chunked", refs, widths[1], first.egpt.shape[1], str(first.egpt.dtype).replace("torch.", ""),
                   index, drafter_dim=widths[0])


def open_single(path: Path) -> Dataset:
    try:
        obj = safe_load(path, mmap=True)
    except CheckpointError as exc:
        raise DataError(str(exc)) from None
    chunk = validate_chunk(obj, str(path))
    ref = ChunkRef(path, len(chunk), 0)
    drafter, verifier = chunk_widths(chunk)
    return Dataset(path, "single", [ref], verifier, chunk.egpt.shape[1], str(chunk.egpt.dtype).replace("torch.", ""),
                   drafter_dim=drafter)
