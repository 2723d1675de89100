"""Moving between a padded batch [B, S, ...] and its valid tokens [T, ...].

Adapters compute every per-token part (projections, FFN, norms) on the valid tokens alone and
pad only around attention, which needs the [B, S] layout. A flat index, built once per batch,
does the gathers and scatters: each boolean-mask indexing would recount the mask (a device
sync on CUDA).
"""

from __future__ import annotations

import torch


class Padding:
    """Where the valid tokens of a padded batch are. Tokens are in `tensor[mask]` order."""

    def __init__(self, mask: torch.Tensor) -> None:
        if mask.dim() != 2 or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool [B, S] tensor, got {mask.dtype} {tuple(mask.shape)}")
        self.mask = mask
        self.index = mask.flatten().nonzero().squeeze(1)  # [T] positions in the flattened batch

    @property
    def seq_len(self) -> int:
        return self.mask.shape[1]

    @property
    def positions(self) -> torch.Tensor:
        """[T] position of each token within its sequence."""
        return self.index % self.seq_len

    def gather(self, padded: torch.Tensor) -> torch.Tensor:
        """[B, S, ...] -> [T, ...]."""
        return padded.flatten(0, 1).index_select(0, self.index)

    def scatter(self, tokens: torch.Tensor) -> torch.Tensor:
        """[T, ...] -> [B, S, ...], zeros at the padded positions."""
        flat = tokens.new_zeros((self.mask.numel(),) + tokens.shape[1:])
        return flat.index_copy(0, self.index, tokens).view(self.mask.shape + tokens.shape[1:])
