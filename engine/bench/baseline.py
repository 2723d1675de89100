"""Seed-style reference implementations, kept only to measure against (never used to train).

They reproduce what the seed's script does: a full torch.load of each chunk, then a Python
loop that pads sample by sample into each batch; and per-token Python loops for metrics.
"""

from __future__ import annotations

from typing import Iterator

import torch

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
    result = {f"accept_{round(tau * 100)}": accepted[tau] / max(tokens, 1) for tau in thresholds}
    result["consecutive_90"] = prefix_total / max(pred.shape[0], 1)
    return result
