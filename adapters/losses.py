"""The levels' training losses, on the valid tokens only: values are selected with the mask
before any arithmetic, so even NaN at a padded position cannot leak in."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def token_cosine(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cosine similarity per position, [B, S]."""
    return F.cosine_similarity(pred, target, dim=-1)


class _MseAndCosine(torch.autograd.Function):
    """MSE over every value and the cosine of each token, for [T, H] tensors, with a hand-written
    backward. Autograd through F.mse_loss and F.cosine_similarity takes about twice as many
    passes over the [T, H] tensors, which at hidden 1024 costs as much as a per-token level's
    own backward. The cosine matches F.cosine_similarity (each norm clamped to eps)."""

    @staticmethod
    def forward(ctx, pred: torch.Tensor, target: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        diff = pred - target
        mse = torch.linalg.vector_norm(diff).square() / diff.numel()
        pred_norm = torch.linalg.vector_norm(pred, dim=-1).clamp_min(eps)
        target_norm = torch.linalg.vector_norm(target, dim=-1).clamp_min(eps)
        # not linalg.vecdot: autocast would run it in bf16 (mul and sum keep the fp32 inputs)
        cosine = (pred * target).sum(-1) / (pred_norm * target_norm)
        ctx.save_for_backward(pred, target, diff, pred_norm, target_norm, cosine)
        return mse, cosine

    @staticmethod
    def backward(ctx, grad_mse: torch.Tensor, grad_cosine: torch.Tensor):
        pred, target, diff, pred_norm, target_norm, cosine = ctx.saved_tensors
        scale = 2.0 * grad_mse / diff.numel()
        cross = (grad_cosine / (pred_norm * target_norm)).unsqueeze(-1)
        grad_pred = grad_target = None
        if ctx.needs_input_grad[0]:  # d cos / d pred = target / (|p| |t|) − cos · pred / |p|²
            grad_pred = (diff * scale).addcmul_(target, cross)
            grad_pred.addcmul_(pred, (-grad_cosine * cosine / pred_norm.square()).unsqueeze(-1))
        if ctx.needs_input_grad[1]:
            grad_target = (diff * -scale).addcmul_(pred, cross)
            grad_target.addcmul_(target, (-grad_cosine * cosine / target_norm.square()).unsqueeze(-1))
        return grad_pred, grad_target, None


def token_alignment(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """(MSE + 0.5 · (1 − mean cosine), the cosine of each token) over valid tokens [T, H]."""
    mse, cosine = _MseAndCosine.apply(pred, target, eps)
    return mse + 0.5 * (1.0 - cosine.mean()), cosine


def next_token_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`_next_state_mse` on valid tokens [T, H] (in tensor[mask] order): when token j at (b, t)
    has a valid successor (b, t + 1), that successor is token j + 1."""
    has_next = torch.zeros_like(mask)
    has_next[:, :-1] = mask[:, :-1] & mask[:, 1:]
    index = has_next[mask].nonzero().squeeze(1)
    if index.numel() == 0:
        return pred.sum() * 0.0
    return F.mse_loss(pred.index_select(0, index), target.index_select(0, index + 1))


@dataclass
class Objective:
    """A level's loss on one batch, with what the metrics need, all at the valid positions."""

    loss: torch.Tensor    # scalar
    cosine: torch.Tensor  # [T] cosine of each valid token, in tensor[mask] order
    pred: torch.Tensor    # [T, H] float predictions at the valid positions
    target: torch.Tensor  # [T, H] verifier states at the valid positions


def batch_objective(net: torch.nn.Module, predicts_next: bool, egpt: torch.Tensor, vl: torch.Tensor,
                    mask: torch.Tensor) -> Objective:
    """Run an adapter (or its DDP wrapper) on a packed batch (valid tokens [T, H] and the
    [B, S] mask, as the loaders deliver it) and score it with its level's loss."""
    pred = net(egpt, vl, mask, packed=True).float()
    loss, cosine = token_alignment(pred, vl)
    if predicts_next:
        loss = 0.5 * loss + 0.5 * next_token_mse(pred, vl, mask)
    return Objective(loss, cosine, pred, vl)
