"""Where an extraction goes: OUT/train and OUT/val, written a chunk at a time in the chunked or
the packed format (engine/data), with the resume state (engine.extract.options.STATE) after every chunk so an
interrupted extraction resumes from its last complete chunk. Until it finishes a split has no
index.json, so nothing mistakes half a dataset for a whole one."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from adapters.checkpoint import atomic_torch_save
from common.fileio import write_json
from engine.data.packed import DTYPES, packed_index, write_chunk


def empty_split_state() -> dict[str, Any]:
    return {"chunks": [], "samples": 0, "tokens": 0, "aligned": 0, "text_tokens": 0, "next": 0}


class SplitWriter:
    """Buffers samples and writes one chunk every `chunk_size` samples (the only chunk in memory)."""

    def __init__(self, directory: Path, fmt: str, store: str, chunk_size: int, state: dict[str, Any]) -> None:
        self.dir = directory
        self.fmt = fmt
        self.dtype = DTYPES[store]
        self.chunk_size = chunk_size
        self.state = state
        self.buffer: list[tuple[torch.Tensor, torch.Tensor, int, int, int]] = []
        (directory / "chunks").mkdir(parents=True, exist_ok=True)

    def add(self, drafter: torch.Tensor, verifier: torch.Tensor, index: int, aligned: int, text_tokens: int) -> None:
        """One sample ([L, Hd] and [L, Hv]) from prompt `index`; a chunk is written once `chunk_size` wait."""
        self.buffer.append((drafter.to(self.dtype), verifier.to(self.dtype), index, aligned, text_tokens))
        if len(self.buffer) >= self.chunk_size:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        chunk_id = len(self.state["chunks"])
        lens = torch.tensor([d.shape[0] for d, *_ in self.buffer], dtype=torch.long)
        drafter, hidden = self.buffer[0][0].shape[1], self.buffer[0][1].shape[1]
        if self.fmt == "chunked":
            longest = int(lens.max())
            egpt = torch.zeros(len(self.buffer), longest, drafter, dtype=self.dtype)
            vl = torch.zeros(len(self.buffer), longest, hidden, dtype=self.dtype)
            for row, (d, v, *_rest) in enumerate(self.buffer):
                egpt[row, : d.shape[0]] = d
                vl[row, : v.shape[0]] = v
            name = f"chunk_{chunk_id:06d}.pt"
            atomic_torch_save({"egpt_hidden": egpt, "vl_hidden": vl, "seq_lens": lens, "chunk_id": chunk_id,
                               "n_samples": len(self.buffer)}, self.dir / "chunks" / name)
            entry = {"path": name, "start_idx": self.state["samples"], "n_samples": len(self.buffer)}
        else:
            entry = write_chunk(self.dir, f"chunk_{chunk_id:06d}", torch.cat([d for d, *_ in self.buffer]),
                                torch.cat([v for _, v, *_ in self.buffer]), lens)
        self.state["chunks"].append(entry)
        self.state["samples"] += len(self.buffer)
        self.state["tokens"] += int(lens.sum())
        self.state["aligned"] += sum(a for *_, a, _t in self.buffer)
        self.state["text_tokens"] += sum(t for *_, t in self.buffer)
        self.state["next"] = self.buffer[-1][2] + 1
        self.state["hidden_dim"], self.state["drafter_dim"] = hidden, drafter
        self.buffer.clear()

    def finish(self, extraction: dict[str, Any]) -> None:
        """The last chunk, then index.json: the split is a dataset from here on."""
        self.flush()
        drafter, hidden = self.state.get("drafter_dim", self.state["hidden_dim"]), self.state["hidden_dim"]
        created = datetime.now().astimezone().isoformat(timespec="seconds")
        if self.fmt == "chunked":
            index = {"total_samples": self.state["samples"], "chunk_size": self.chunk_size,
                     "drafter_dim": drafter, "hidden_dim": hidden,
                     "chunks": self.state["chunks"], "config": {"generator": "adapter-engine extract"}}
        else:
            index = packed_index(self.dtype, (drafter, hidden), self.state["samples"], self.state["tokens"],
                                 self.state["chunks"])
        write_json(self.dir / "index.json", {**index, "extraction": extraction, "created": created})
