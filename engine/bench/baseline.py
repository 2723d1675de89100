"""Seed-style reference implementations, kept only to measure against (never used to train).

They reproduce what the seed's script does: a full torch.load of each chunk, then a Python
loop that pads sample by sample into each batch; and per-token Python loops for metrics.
"""

from __future__ import annotations

import copy
from typing import Iterator

import torch
import torch.nn.functional as F

from adapters.base import Adapter
from adapters.losses import token_alignment
from adapters.padding import Padding
from engine.data.formats import Dataset


def seed_style_batches(dataset: Dataset, batch_size: int, seed: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
    generator = torch.Generator().manual_seed(seed)
    for ref in dataset.chunks:
        data = torch.load(ref.path, map_location="cpu", weights_only=True)
        egpt, vl, lens = data["egpt_hidden"], data["vl_hidden"], data["seq_lens"]
        hidden = egpt.shape[2]
        order = torch.randperm(egpt.shape[0], generator=generator)
        for start in range(0, len(order), batch_size):
            samples = []
            for i in order[start:start + batch_size].tolist():
                length = int(lens[i])
                samples.append((egpt[i, :length], vl[i, :length], length))
            longest = max(length for _, _, length in samples)
            batch_egpt = torch.zeros(len(samples), longest, hidden)
            batch_vl = torch.zeros(len(samples), longest, hidden)
            mask = torch.zeros(len(samples), longest, dtype=torch.bool)
            for j, (e, v, length) in enumerate(samples):
                batch_egpt[j, :length] = e
                batch_vl[j, :length] = v
                mask[j, :length] = True
            yield batch_egpt, batch_vl, mask


def per_token_metrics(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                      thresholds=(0.8, 0.85, 0.9, 0.95)) -> dict[str, float]:
    """Acceptance and leading-run metrics with a Python loop over samples and tokens."""
    counts = per_token_counts(pred, target, mask, thresholds)
    result = {f"accept_{round(tau * 100)}": counts[tau] / max(counts["tokens"], 1) for tau in thresholds}
    result["consecutive_90"] = counts["prefix"] / max(counts["samples"], 1)
    return result


def per_token_counts(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                     thresholds=(0.8, 0.85, 0.9, 0.95)) -> dict:
    """Accepted-token counts per threshold, valid tokens, samples and summed leading runs."""
    accepted = {tau: 0 for tau in thresholds}
    tokens, prefix_total = 0, 0
    for b in range(pred.shape[0]):
        leading, still = 0, True
        for t in range(pred.shape[1]):
            if not mask[b, t]:
                continue
            cos = torch.nn.functional.cosine_similarity(pred[b, t], target[b, t], dim=0).item()
            tokens += 1
            for tau in thresholds:
                accepted[tau] += cos > tau
            if still and cos > 0.9:
                leading += 1
            else:
                still = False
        prefix_total += leading
    return {**accepted, "tokens": tokens, "samples": pred.shape[0], "prefix": prefix_total}


class SeedStyleLayer(torch.nn.Module):
    """The same pre-norm layer with nn.MultiheadAttention, as the seed's adapters build it."""

    def __init__(self, layer) -> None:
        super().__init__()
        hidden = layer.qkv.in_features
        self.num_heads = layer.num_heads
        self.norm1, self.norm2, self.ffn = layer.norm1, layer.norm2, layer.ffn
        self.attn = torch.nn.MultiheadAttention(hidden, layer.num_heads, dropout=layer.dropout, batch_first=True,
                                                device=layer.qkv.weight.device)
        self.train(layer.training)
        with torch.no_grad():  # same weights as ours, so both sides compute the same function
            self.attn.in_proj_weight.copy_(layer.qkv.weight)
            self.attn.in_proj_bias.copy_(layer.qkv.bias)
            self.attn.out_proj.weight.copy_(layer.out.weight)
            self.attn.out_proj.bias.copy_(layer.out.bias)

    def forward(self, x: torch.Tensor, padding: Padding, attn_mask: torch.Tensor) -> torch.Tensor:
        """Takes and returns valid tokens like ours, but computes every padded position."""
        x = padding.scatter(x)
        batch, seq, _ = x.shape
        blocked = ~attn_mask.expand(batch, self.num_heads, seq, seq).reshape(batch * self.num_heads, seq, seq)
        h = self.norm1(x)
        attended, _ = self.attn(h, h, h, attn_mask=blocked, need_weights=False)
        x = x + attended
        return padding.gather(x + self.ffn(self.norm2(x)))


class SeedStyleAdapter(torch.nn.Module):
    """A copy of an adapter as the seed runs it: attention through nn.MultiheadAttention, and
    every padded position computed (per-token levels on the whole padded batch, attention
    levels in each layer; the few per-token parts around the layers stay on valid tokens, which
    only flatters the baseline)."""

    def __init__(self, model: Adapter) -> None:
        super().__init__()
        self.model = copy.deepcopy(model)
        self.predicts_next = model.predicts_next
        if hasattr(self.model, "layers"):
            self.model.layers = torch.nn.ModuleList(SeedStyleLayer(layer) for layer in self.model.layers)

    def forward(self, egpt: torch.Tensor, vl: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.model.per_token:
            return self.model.adapt(self.model.source(egpt, vl), Padding(mask))
        return self.model(egpt, vl, mask)


def padded_level_loss(predicts_next: bool, pred: torch.Tensor, target: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
    """A level's loss computed as the seed does, on padded [B, S, H] predictions: alignment
    (MSE + 0.5 · (1 − mean cosine)) over valid positions, and for levels that predict the next
    state, half of it plus half the MSE of pred[:, :-1] against target[:, 1:] where both are
    valid. `batch_objective` must equal it; the step benchmark's baseline trains with it."""
    alignment = token_alignment(pred[mask], target[mask])[0]
    if not predicts_next:
        return alignment
    next_mask = mask[:, :-1] & mask[:, 1:]
    following = (F.mse_loss(pred[:, :-1][next_mask], target[:, 1:][next_mask]) if next_mask.any()
                 else pred.sum() * 0.0)
    return 0.5 * alignment + 0.5 * following
