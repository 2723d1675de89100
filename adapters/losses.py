"""Masked losses of SPEC §3. Padding never contributes: values are selected with the mask
before any arithmetic, so even NaN at a padded position cannot leak in."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the valid positions (and every hidden unit)."""
    return F.mse_loss(pred[mask], target[mask])


def token_cosine(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cosine similarity per position, [B, S]."""
    return F.cosine_similarity(pred, target, dim=-1)


def _alignment(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(MSE + 0.5 · (1 − masked mean cosine), that cosine). The valid positions are gathered once
    for both terms (each gather costs a padded-size scatter in backward)."""
    pred_valid, target_valid = pred[mask], target[mask]
    cosine = F.cosine_similarity(pred_valid, target_valid, dim=-1).mean()
    return F.mse_loss(pred_valid, target_valid) + 0.5 * (1.0 - cosine), cosine


def alignment_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE + 0.5 · (1 − masked mean cosine)."""
    return _alignment(pred, target, mask)[0]


def _next_state_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE(pred[:, :-1], target[:, 1:]), masked by the shifted target's validity."""
    next_mask = mask[:, 1:]
    return masked_mse(pred[:, :-1], target[:, 1:], next_mask) if next_mask.any() else pred.sum() * 0.0


def dual_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """0.5 · alignment + 0.5 · MSE(pred[:, :-1], target[:, 1:]) (next-state prediction)."""
    return level_loss_and_cosine(True, pred, target, mask)[0]


def level_loss_and_cosine(predicts_next: bool, pred: torch.Tensor, target: torch.Tensor,
                          mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The training loss of a level (dual for levels that predict the next state) and the masked
    mean cosine at the same position, computed once for both."""
    loss, cosine = _alignment(pred, target, mask)
    if predicts_next:
        loss = 0.5 * loss + 0.5 * _next_state_mse(pred, target, mask)
    return loss, cosine


def level_loss(predicts_next: bool, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The training loss of a level: dual for levels that predict the next state."""
    return level_loss_and_cosine(predicts_next, pred, target, mask)[0]
