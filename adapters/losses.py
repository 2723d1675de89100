"""Masked losses of SPEC §3. Padding never contributes: values are selected with the mask
before any arithmetic, so even NaN at a padded position cannot leak in."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the valid positions (and every hidden unit)."""
    return F.mse_loss(pred[mask], target[mask])


def token_cosine(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cosine similarity per position, [B, S]."""
    return F.cosine_similarity(pred, target, dim=-1)


def token_alignment(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(MSE + 0.5 · (1 − mean cosine), the cosine of each token) over valid tokens [T, H]."""
    cosine = F.cosine_similarity(pred, target, dim=-1)
    return F.mse_loss(pred, target) + 0.5 * (1.0 - cosine.mean()), cosine


def alignment_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE + 0.5 · (1 − masked mean cosine), on padded [B, S, H] tensors."""
    return token_alignment(pred[mask], target[mask])[0]


def _next_state_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE(pred[:, :-1], target[:, 1:]), masked by the shifted target's validity."""
    next_mask = mask[:, 1:]
    return masked_mse(pred[:, :-1], target[:, 1:], next_mask) if next_mask.any() else pred.sum() * 0.0


def dual_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """0.5 · alignment + 0.5 · MSE(pred[:, :-1], target[:, 1:]) (next-state prediction)."""
    return 0.5 * alignment_loss(pred, target, mask) + 0.5 * _next_state_mse(pred, target, mask)


def level_loss(predicts_next: bool, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The training loss of a level on padded predictions: dual for levels that predict the next
    state. (The trainer uses `batch_objective`, which computes the same from valid positions.)"""
    return dual_loss(pred, target, mask) if predicts_next else alignment_loss(pred, target, mask)


@dataclass
class Objective:
    """A level's loss on one batch, with what the metrics need, all at the valid positions."""

    loss: torch.Tensor    # scalar
    cosine: torch.Tensor  # [T] cosine of each valid token, in tensor[mask] order
    pred: torch.Tensor    # [T, H] float predictions at the valid positions
    target: torch.Tensor  # [T, H] verifier states at the valid positions


def batch_objective(net: torch.nn.Module, predicts_next: bool, egpt: torch.Tensor, vl: torch.Tensor,
                    mask: torch.Tensor) -> Objective:
    """Run an adapter (or its DDP wrapper) on a batch and score it with its level's loss.

    Only the dual loss needs the padded prediction (to shift it against the next state); every
    other level is asked for its valid positions alone, so per-token levels never touch padding.
    """
    if predicts_next:
        padded = net(egpt, vl, mask).float()
        pred = padded[mask]
    else:
        pred = net(egpt, vl, mask, valid_only=True).float()
    target = vl[mask]
    loss, cosine = token_alignment(pred, target)
    if predicts_next:
        loss = 0.5 * loss + 0.5 * _next_state_mse(padded, vl, mask)
    return Objective(loss, cosine, pred, target)
