"""Speculative-decoding evaluation: how many drafted tokens the verifier would accept, and what
that buys in wall-clock. All batched tensor code.

For a sample and a threshold τ, a position is accepted when cos(pred_t, target_t) > τ, and L is
the accepted prefix: the number of leading valid positions that are all accepted.
  accept_rate[τ]             accepted tokens / valid tokens, pooled over the set
  prefix_length[τ]           mean, median and p90 of L over samples
  accept_by_position[τ][k-1] fraction of samples whose first k positions are all accepted (L >= k)
  expected_accepted[τ][γ]    E[min(L, γ)]: tokens accepted per verification step with draft length γ
  speedup                    (E[min(L, γ)] + 1) / (1 + γ · draft_cost) at the primary threshold:
                             each verification step yields the accepted drafts plus one token
                             from the verifier, and costs one verifier step plus γ draft steps.
  token_top1 / token_top5    with an LM head: argmax(head·target) is the argmax / in the top 5
                             of head·pred, over valid tokens
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from adapters.losses import token_cosine
from engine.data.formats import Dataset
from engine.data.loader import val_loader
from engine.device import to_device
from engine.metrics import leading_run

MAX_GAMMA = 8
PRIMARY_THRESHOLD = 0.9


def tau_key(tau: float) -> str:
    return f"{tau:g}"


class SpecDecodeAccumulator:
    """Collects per-sample prefix lengths and token counts over batches."""

    def __init__(self, thresholds: list[float], lm_head: torch.Tensor | None = None) -> None:
        self.thresholds = list(thresholds)
        self.lm_head = lm_head
        self.prefix: list[torch.Tensor] = []  # [B, len(thresholds)] per batch
        self.accepted = torch.zeros(len(self.thresholds), dtype=torch.long)
        self.tokens = 0
        self.top1 = 0
        self.top5 = 0
        self.max_len = 0

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        """pred, target: the valid tokens [T, H] of a batch (tensor[mask] order); mask [B, S]."""
        cos = token_cosine(pred.float(), target.float())                     # [T]
        taus = torch.tensor(self.thresholds, device=cos.device).view(-1, 1)
        passed = cos.unsqueeze(0) > taus                                      # [K, T]
        self.accepted += passed.sum(dim=1).cpu()
        self.prefix.append(leading_run(passed, mask).T.cpu())                # [B, K]
        self.tokens += cos.shape[0]
        self.max_len = max(self.max_len, mask.shape[1])
        if self.lm_head is not None:
            head = self.lm_head.to(pred.device, torch.float32)
            logits_pred = pred.float() @ head.T
            truth = (target.float() @ head.T).argmax(-1, keepdim=True)
            top5 = logits_pred.topk(min(5, head.shape[0]), dim=-1).indices
            self.top1 += int((top5[:, :1] == truth).sum())
            self.top5 += int((top5 == truth).any(-1).sum())

    def compute(self, gamma: int, draft_cost: float) -> dict[str, Any]:
        lengths = torch.cat(self.prefix).double()                          # [N, T]
        positions = torch.arange(1, self.max_len + 1, dtype=torch.double)
        gammas = torch.arange(1, MAX_GAMMA + 1, dtype=torch.double)
        result: dict[str, Any] = {
            "samples": lengths.shape[0], "tokens": self.tokens, "thresholds": self.thresholds,
            "accept_rate": {}, "prefix_length": {}, "accept_by_position": {}, "expected_accepted": {},
        }
        for i, tau in enumerate(self.thresholds):
            key, length = tau_key(tau), lengths[:, i]
            result["accept_rate"][key] = self.accepted[i].item() / max(self.tokens, 1)
            result["prefix_length"][key] = {"mean": length.mean().item(), "median": torch.quantile(length, 0.5).item(),
                                            "p90": torch.quantile(length, 0.9).item()}
            result["accept_by_position"][key] = (length[:, None] >= positions[None, :]).double().mean(0).tolist()
            expected = torch.minimum(length[:, None], gammas[None, :]).mean(0)
            result["expected_accepted"][key] = {str(int(g)): e for g, e in zip(gammas.tolist(), expected.tolist())}
        primary = tau_key(PRIMARY_THRESHOLD if PRIMARY_THRESHOLD in self.thresholds else self.thresholds[-1])
        expected_at_gamma = torch.minimum(lengths[:, self.thresholds.index(float(primary))],
                                          torch.tensor(float(gamma))).mean().item()
        result.update({
            "threshold": float(primary), "gamma": gamma, "draft_cost": draft_cost,
            "expected_accepted_at_gamma": expected_at_gamma,
            "speedup": (expected_at_gamma + 1.0) / (1.0 + gamma * draft_cost),
        })
        if self.lm_head is not None:
            result["token_top1"] = self.top1 / max(self.tokens, 1)
            result["token_top5"] = self.top5 / max(self.tokens, 1)
        return result


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: Dataset, *, thresholds: list[float], gamma: int, draft_cost: float,
             lm_head: torch.Tensor | None = None, device: torch.device | str = "cpu", batch_size: int = 64) -> dict[str, Any]:
    device = torch.device(device)
    model = model.to(device).eval()
    acc = SpecDecodeAccumulator(thresholds, lm_head)
    gpu = device.type == "cuda"
    batches = val_loader(data, batch_size, pin_memory=gpu, reuse_buffers=3, gather_ahead=gpu)
    for batch in to_device(batches, device):
        acc.update(model(batch.egpt, batch.vl, batch.mask, packed=True), batch.vl, batch.mask)
    return acc.compute(gamma, draft_cost)


def describe(result: dict[str, Any]) -> str:
    tau = tau_key(result["threshold"])
    prefix = result["prefix_length"][tau]
    lines = [
        f"{result['samples']} samples, {result['tokens']} tokens",
        "accept rate: " + ", ".join(f"@{k} {v:.3f}" for k, v in result["accept_rate"].items()),
        f"accepted prefix @{tau}: mean {prefix['mean']:.2f}, median {prefix['median']:g}, p90 {prefix['p90']:.1f}",
        "E[min(L, γ)] @" + tau + ": " + ", ".join(f"γ={g} {v:.2f}" for g, v in result["expected_accepted"][tau].items()),
        f"estimated speedup at γ={result['gamma']}, draft cost {result['draft_cost']:g}: {result['speedup']:.2f}x",
    ]
    if "token_top1" in result:
        lines.append(f"token agreement: top-1 {result['token_top1']:.3f}, top-5 {result['token_top5']:.3f}")
    return "\n".join(lines)


def eval_path_for(target: Path) -> Path:
    return (target if target.is_dir() else target.parent) / "eval.json"
