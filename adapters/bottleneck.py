"""Per-token residual bottleneck adapters: L1 Bottleneck, L2 MultiLayer, L3 Wide."""

from __future__ import annotations

import torch
from torch import nn

from adapters.base import Adapter
from adapters.padding import Padding


class BottleneckBlock(nn.Module):
    """x + α · up(dropout(GELU(norm(down(pre_norm(x)))))), `up` zero-initialised so the block
    starts as the identity. L1/L2 blocks normalise the input; L3 blocks normalise inside."""

    def __init__(self, hidden_dim: int, bottleneck_dim: int, dropout: float, alpha: float,
                 *, pre_norm: bool, inner_norm: bool) -> None:
        super().__init__()
        self.pre_norm = nn.LayerNorm(hidden_dim) if pre_norm else nn.Identity()
        self.down = nn.Linear(hidden_dim, bottleneck_dim, bias=False)
        self.inner_norm = nn.LayerNorm(bottleneck_dim) if inner_norm else nn.Identity()
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck_dim, hidden_dim, bias=False)
        nn.init.zeros_(self.up.weight)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inner_norm(self.down(self.pre_norm(x)))
        return x + self.alpha * self.up(self.dropout(self.act(h)))


class BottleneckAdapter(Adapter):
    """L1: one pre-norm bottleneck block and a final LayerNorm (2,113,537 params at H=4096)."""

    per_token = True

    def __init__(self, hidden_dim: int, bottleneck_dim: int = 256, num_blocks: int = 1,
                 dropout: float = 0.1, alpha: float = 0.1, *, vlm_only: bool = False) -> None:
        super().__init__(hidden_dim, vlm_only=vlm_only)
        self.input_norm: nn.Module = nn.Identity()
        self.blocks = nn.ModuleList(
            BottleneckBlock(hidden_dim, bottleneck_dim, dropout, alpha, pre_norm=True, inner_norm=False)
            for _ in range(num_blocks)
        )
        self.final_norm = nn.LayerNorm(hidden_dim)

    def adapt(self, tokens: torch.Tensor, padding: Padding) -> torch.Tensor:
        # per token: the layout of the batch does not matter
        x = self.input_norm(tokens)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)


class MultiLayerBottleneckAdapter(BottleneckAdapter):
    """L2: three stacked L1 blocks and a final LayerNorm (6,324,227 params at H=4096)."""

    def __init__(self, hidden_dim: int, bottleneck_dim: int = 256, num_blocks: int = 3,
                 dropout: float = 0.1, alpha: float = 0.1, *, vlm_only: bool = False) -> None:
        super().__init__(hidden_dim, bottleneck_dim, num_blocks, dropout, alpha, vlm_only=vlm_only)


class WideBottleneckAdapter(BottleneckAdapter):
    """L3: input LayerNorm, blocks H→1024→H with a LayerNorm inside, final LayerNorm
    (16,797,698 params at H=4096)."""

    def __init__(self, hidden_dim: int, bottleneck_dim: int = 1024, num_blocks: int = 2,
                 dropout: float = 0.1, alpha: float = 0.1, *, vlm_only: bool = False) -> None:
        Adapter.__init__(self, hidden_dim, vlm_only=vlm_only)
        self.input_norm = nn.LayerNorm(hidden_dim)
        self.blocks = nn.ModuleList(
            BottleneckBlock(hidden_dim, bottleneck_dim, dropout, alpha, pre_norm=False, inner_norm=True)
            for _ in range(num_blocks)
        )
        self.final_norm = nn.LayerNorm(hidden_dim)
