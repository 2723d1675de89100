"""Validation and training metrics (the history.json keys of docs/CONTRACT.md), as tensor code over whole batches.

Per valid token t, cos_t = cosine(pred_t, target_t).
  loss, cos_sim     mean over batches of the per-batch masked value (as the seed computes them)
  accept_τ          fraction of all valid tokens with cos_t > τ (strict), pooled over the set
  consecutive_90    per sample, the leading run of valid positions with cos_t > 0.90; mean
  token_match       fraction of valid tokens where argmax(head·pred) == argmax(head·target)
"""

from __future__ import annotations

import torch

from adapters.losses import Objective
from engine.rundir.files import history_key

THRESHOLDS = (0.80, 0.85, 0.90, 0.95)


def leading_run(accepted: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sample, how many leading valid positions are accepted.

    accepted: per-token flags [..., T] in tensor[mask] order; mask: [B, S]. Returns [..., B]
    long. Only the flags go back into the [B, S] layout, never the states.
    """
    full = torch.zeros(accepted.shape[:-1] + mask.shape, dtype=torch.bool, device=accepted.device)
    full[..., mask] = accepted
    return full.long().cumprod(dim=-1).sum(dim=-1)


class MetricAccumulator:
    """Accumulates per-batch statistics on the device; `compute()` syncs once at the end."""

    def __init__(self, thresholds: tuple[float, ...] = THRESHOLDS, lm_head: torch.Tensor | None = None,
                 prefix_threshold: float = 0.90) -> None:
        self.thresholds = thresholds
        self.lm_head = lm_head
        self.prefix_threshold = prefix_threshold
        self.loss_sum = 0.0
        self.cos_sum = 0.0
        self.batches = 0
        self._stats: torch.Tensor | None = None  # [tokens, samples, prefix_sum, matches, accepts...]

    @torch.no_grad()
    def update(self, objective: Objective, mask: torch.Tensor) -> None:
        """Add one batch, scored by `batch_objective` (valid tokens in mask order)."""
        cos = objective.cosine.float()
        valid = torch.tensor(cos.numel(), device=cos.device)
        accepts = torch.stack([(cos > tau).sum() for tau in self.thresholds])
        prefix = leading_run(cos > self.prefix_threshold, mask).sum()
        matches = torch.zeros((), dtype=torch.long, device=cos.device)
        if self.lm_head is not None:
            pred, target = objective.pred.float(), objective.target.float()
            head = self.lm_head.to(pred.dtype)
            matches = ((pred @ head.T).argmax(-1) == (target @ head.T).argmax(-1)).sum()
        stats = torch.cat([torch.stack([valid, torch.tensor(mask.shape[0], device=cos.device), prefix, matches]), accepts])
        self._stats = stats if self._stats is None else self._stats + stats
        self.loss_sum += float(objective.loss)
        self.cos_sum += float(cos.mean())
        self.batches += 1

    def reduce(self, all_reduce) -> None:
        """Sum the statistics over ranks with `all_reduce(tensor)`: pooled metrics then equal what
        one process computes on the whole set (batches are dealt out, never split)."""
        stats = self._stats if self._stats is not None else torch.zeros(4 + len(self.thresholds), dtype=torch.long)
        packed = torch.cat([torch.tensor([self.loss_sum, self.cos_sum, self.batches], dtype=torch.float64),
                            stats.double().cpu()])
        device = self._stats.device if self._stats is not None else torch.device("cpu")
        packed = all_reduce(packed.to(device)).cpu()
        self.loss_sum, self.cos_sum, self.batches = packed[0].item(), packed[1].item(), int(packed[2].item())
        self._stats = packed[3:].round().long()

    def compute(self, prefix: str = "val_") -> dict[str, float]:
        if self._stats is None or not self.batches:
            return {}
        tokens, samples, prefix_sum, matches, *accepts = self._stats.tolist()
        result = {
            f"{prefix}loss": self.loss_sum / self.batches,
            f"{prefix}cos_sim": self.cos_sum / self.batches,
        }
        for tau, count in zip(self.thresholds, accepts):
            result[f"{prefix}accept_{history_key(tau)}"] = count / max(tokens, 1)
        result[f"{prefix}consecutive_{history_key(self.prefix_threshold)}"] = prefix_sum / max(samples, 1)
        if self.lm_head is not None:
            result[f"{prefix}token_match"] = matches / max(tokens, 1)
        return result
