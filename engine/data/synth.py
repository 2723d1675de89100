"""The built-in demo dataset: synthetic paired hidden states in the chunked format.

Generative process (all per-dimension unit variance, so LayerNorm'd predictions can match):
  tokens   t_i ~ Uniform(vocab)                       a token sequence per sample
  z_i      = E[t_i]                                   shared token content; tokens come in families of
                                                      `family` near-synonyms: E[t] = √(1−s²)·F[t // family] + s·N(0, 1)
  drafter  e_i = z_i + σ_d · ε                        what the event-camera model sees (noisy)
                                                      (at another width Hd: (z_i + σ_d · ε) · P, P a fixed
                                                      random [H, Hd] map, so the drafter is a different model)
  verifier v_i = a · z_i                              the part a copy of e_i already explains
               + b · φ(z_i)                           per-token nonlinear map, φ(z) = norm(tanh(z W1) W2)
               + c · ctx_i                            depends on earlier tokens: ctx_i = norm(mean_{j<i} z_j · C)
               + σ_v · ε                              irreducible noise
With the defaults, copying e scores cosine ≈ 0.6; a per-token map (L1–L3) can learn the a and b
parts (≈ 0.85); attention over earlier tokens (L4/L5) also reaches the c part; levels that read
the verifier states themselves (B1, L5F) score highest. The optional LM head is E scaled into
the verifier space, so a token's state points at its own row; telling a token from its
near-synonyms needs the small `s` part, so token agreement separates good adapters from weak ones.
Deterministic for a seed: the model (E, W1, W2, C) comes from `seed`, train samples from
seed + 1 and validation samples from seed + 2.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import torch

from adapters.checkpoint import atomic_torch_save
from common.errors import UserInputError
from adapters.registry import MAX_HIDDEN_DIM
from common.fileio import make_dirs, shared_tempdir, unwritable_dir, write_json


@dataclass(frozen=True)
class SynthConfig:
    samples: int = 2048
    val_samples: int = 512
    hidden_dim: int = 256
    drafter_dim: int = 0  # 0: the drafter as wide as the verifier
    max_seq: int = 32
    min_seq: int = 4
    chunk_size: int = 512
    vocab: int = 512
    family: int = 8
    synonym_spread: float = 0.2
    seed: int = 0
    a: float = 0.65
    b: float = 0.45
    c: float = 0.5
    drafter_noise: float = 0.35
    verifier_noise: float = 0.15


class Generator:
    """The fixed "models" of the process, drawn once from the seed."""

    def __init__(self, cfg: SynthConfig) -> None:
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.seed)
        h = cfg.hidden_dim
        families = torch.randn(-(-cfg.vocab // cfg.family), h, generator=g)
        spread = cfg.synonym_spread
        self.embed = (math.sqrt(1 - spread ** 2) * families.repeat_interleave(cfg.family, 0)[: cfg.vocab]
                      + spread * torch.randn(cfg.vocab, h, generator=g))
        self.w1 = torch.randn(h, h, generator=g) / math.sqrt(h)
        self.w2 = torch.randn(h, h, generator=g) / math.sqrt(h)
        self.ctx = torch.randn(h, h, generator=g) / math.sqrt(h)
        # drawn last and only when the widths differ, so equal-width sets stay what they were
        hd = cfg.drafter_dim or h
        self.drafter_map = torch.randn(h, hd, generator=g) / math.sqrt(h) if hd != h else None

    @staticmethod
    def _unit(x: torch.Tensor) -> torch.Tensor:
        return x / x.pow(2).mean(-1, keepdim=True).clamp_min(1e-12).sqrt()

    def sample(self, n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        seq_lens = torch.randint(cfg.min_seq, cfg.max_seq + 1, (n,), generator=g)
        tokens = torch.randint(cfg.vocab, (n, cfg.max_seq), generator=g)
        mask = (torch.arange(cfg.max_seq)[None, :] < seq_lens[:, None]).unsqueeze(-1)
        z = self.embed[tokens]
        nonlinear = self._unit(torch.tanh(z @ self.w1) @ self.w2)
        earlier = torch.cumsum(z, dim=1) - z
        count = torch.arange(cfg.max_seq, dtype=z.dtype).clamp_min(1).view(1, -1, 1)
        context = self._unit((earlier / count) @ self.ctx)
        context[:, 0] = 0.0
        egpt = z + cfg.drafter_noise * torch.randn(z.shape, generator=g)
        vl = cfg.a * z + cfg.b * nonlinear + cfg.c * context + cfg.verifier_noise * torch.randn(z.shape, generator=g)
        if self.drafter_map is not None:
            egpt = egpt @ self.drafter_map
        zero = torch.zeros(())
        return {
            "egpt_hidden": torch.where(mask, egpt, zero).contiguous(),
            "vl_hidden": torch.where(mask, vl, zero).contiguous(),
            "seq_lens": seq_lens.long(),
            "tokens": torch.where(mask.squeeze(-1), tokens, -1),
        }

    def lm_head(self) -> torch.Tensor:
        """[V, H]: token rows in the verifier space (the linear part of the process)."""
        return self.cfg.a * self.embed


def _write_split(gen: Generator, out: Path, n: int, seed: int, progress: Callable[[str], None]) -> None:
    cfg = gen.cfg
    (out / "chunks").mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    chunks = []
    for chunk_id, start in enumerate(range(0, n, cfg.chunk_size)):
        size = min(cfg.chunk_size, n - start)
        data = gen.sample(size, g)
        name = f"chunk_{chunk_id:06d}.pt"
        atomic_torch_save({**data, "chunk_id": chunk_id, "n_samples": size}, out / "chunks" / name)
        chunks.append({"path": name, "start_idx": start, "n_samples": size})
        progress(f"{out.name}: chunk {chunk_id + 1}/{-(-n // cfg.chunk_size)} ({start + size}/{n} samples)")
    write_json(out / "index.json", {
        "total_samples": n, "chunk_size": cfg.chunk_size, "chunks": chunks,
        "drafter_dim": cfg.drafter_dim or cfg.hidden_dim, "hidden_dim": cfg.hidden_dim,
        "config": {"generator": "adapter-engine synth", **asdict(cfg)},
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
    })


def synthesize(out: Path, cfg: SynthConfig, *, lm_head: bool = False, force: bool = False,
               progress: Callable[[str], None] = lambda line: None) -> Path:
    """Write OUT/train and OUT/val (and OUT/lm_head.pt). Built in a temp directory beside OUT
    and moved into place, so an interrupted run leaves nothing half-written."""
    for name, value, low in (("samples", cfg.samples, 1), ("val_samples", cfg.val_samples, 1),
                             ("hidden_dim", cfg.hidden_dim, 2), ("drafter_dim", cfg.drafter_dim or 2, 2),
                             ("max_seq", cfg.max_seq, 1),
                             ("chunk_size", cfg.chunk_size, 1)):
        if value < low:
            raise UserInputError(f"--{name} must be >= {low}, got {value}")
    # the generator's own matrices are [H, H] and a chunk [chunk, S, H], twice: refuse what cannot fit
    need = 4 * (4 * cfg.hidden_dim ** 2 + 2 * min(cfg.chunk_size, max(cfg.samples, cfg.val_samples)) * cfg.max_seq * cfg.hidden_dim)
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    if max(cfg.hidden_dim, cfg.drafter_dim) > MAX_HIDDEN_DIM or (have and need > have):
        raise UserInputError(f"a synthetic set at hidden size {cfg.hidden_dim} with chunks of {cfg.chunk_size} x "
                             f"{cfg.max_seq} needs ~{need / 2**30:,.1f} GiB of memory; use smaller sizes")
    if cfg.min_seq > cfg.max_seq:
        cfg = SynthConfig(**{**asdict(cfg), "min_seq": cfg.max_seq})
    out = Path(out)
    problem = unwritable_dir(out)
    if problem:
        raise UserInputError(f"cannot write the dataset: {problem}")
    targets = [out / "train", out / "val"] + ([out / "lm_head.pt"] if lm_head else [])
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        raise UserInputError(f"{existing[0]} already exists; pass --force to overwrite it")
    for target in existing:  # --force replaces only what synth writes: datasets and an LM head file
        is_dataset = target.is_dir() and ((target / "index.json").is_file() or not any(target.iterdir()))
        if not (is_dataset if target.name != "lm_head.pt" else target.is_file()):
            raise UserInputError(f"{target} is not a dataset synth wrote; refusing to replace it")
    created = make_dirs(out)
    gen = Generator(cfg)
    staging = shared_tempdir(".synth-", out)
    try:
        _write_split(gen, staging / "train", cfg.samples, cfg.seed + 1, progress)
        _write_split(gen, staging / "val", cfg.val_samples, cfg.seed + 2, progress)
        if lm_head:
            atomic_torch_save(gen.lm_head(), staging / "lm_head.pt")
        for target in targets:
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            (staging / target.name).replace(target)
    except (OSError, RuntimeError) as exc:  # a full disk, say (torch.save says so with a RuntimeError)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0]
        raise UserInputError(f"cannot write the dataset into {out}: {reason}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
