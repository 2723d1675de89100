"""Per-token residual bottleneck adapters: L1 Bottleneck, L2 MultiLayer, L3 Wide, built and
initialised as the reference builds them (its `create_adapter` with its CLI's defaults)."""

from __future__ import annotations

import torch
from torch import nn

from adapters.base import Adapter
from adapters.padding import Padding


class BottleneckBlock(nn.Module):
    """One residual bottleneck, starting as the identity (zero up-projection).

    narrow (L1, L2): x + α · up(dropout(GELU(down(LayerNorm(x)))))
    wide (L3):       x + α · dropout(up(dropout(GELU(LayerNorm(down(x))))))

    The down-projection is Kaiming-normal (fan_in), with the linear gain for narrow blocks and
    PyTorch's default leaky-ReLU gain (√2) for wide ones, as the reference initialises each.
    """

    def __init__(self, hidden_dim: int, bottleneck_dim: int, dropout: float, alpha: float, *, wide: bool) -> None:
        super().__init__()
        self.pre_norm = nn.Identity() if wide else nn.LayerNorm(hidden_dim)
        self.down = nn.Linear(hidden_dim, bottleneck_dim, bias=False)
        self.inner_norm = nn.LayerNorm(bottleneck_dim) if wide else nn.Identity()
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck_dim, hidden_dim, bias=False)
        self.out_dropout = nn.Dropout(dropout) if wide else nn.Identity()
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        nn.init.kaiming_normal_(self.down.weight, mode="fan_in", nonlinearity="leaky_relu" if wide else "linear")
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inner_norm(self.down(self.pre_norm(x)))
        return x + self.alpha * self.out_dropout(self.up(self.dropout(self.act(h))))


class BottleneckAdapter(Adapter):
    """L1: `num_layers` narrow blocks (1) and a final LayerNorm (2,113,537 params at H=4096). As in
    the reference, L1 stacks `num_layers` blocks and L2/L3 `num_blocks`.

    Drafter width Hd ≠ Hv (L1, L2, L3 alike): an input projection Hd → Hv before the first
    block. Letting the first down-projection read Hd instead would save Hd·Hv parameters but
    leave the block's skip path (the `x` of x + α·up(...)) in Hd, with nothing to add it to:
    the bottleneck only learns a small correction of its input, so the input must already be a
    verifier-width state.
    """

    per_token = True

    def __init__(self, hidden_dim: int, bottleneck_dim: int = 256, num_layers: int = 1,
                 dropout: float = 0.1, alpha: float = 0.1, *, drafter_dim: int | None = None,
                 vlm_only: bool = False) -> None:
        super().__init__(hidden_dim, drafter_dim=drafter_dim, vlm_only=vlm_only)
        self._build(hidden_dim, bottleneck_dim, num_layers, dropout, alpha, wide=False)

    def _build(self, hidden_dim: int, bottleneck_dim: int, blocks: int, dropout: float, alpha: float,
               *, wide: bool) -> None:
        self.input_norm: nn.Module = nn.LayerNorm(hidden_dim) if wide else nn.Identity()
        self.blocks = nn.ModuleList(
            BottleneckBlock(hidden_dim, bottleneck_dim, dropout, alpha, wide=wide) for _ in range(blocks)
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
                 dropout: float = 0.1, alpha: float = 0.1, *, drafter_dim: int | None = None,
                 vlm_only: bool = False) -> None:
        Adapter.__init__(self, hidden_dim, drafter_dim=drafter_dim, vlm_only=vlm_only)
        self._build(hidden_dim, bottleneck_dim, num_blocks, dropout, alpha, wide=False)


class WideBottleneckAdapter(BottleneckAdapter):
    """L3: input LayerNorm, three wide blocks H→1024→H with a LayerNorm inside, final LayerNorm
    (25,188,355 params at H=4096)."""

    def __init__(self, hidden_dim: int, bottleneck_dim: int = 1024, num_blocks: int = 3,
                 dropout: float = 0.1, alpha: float = 0.1, *, drafter_dim: int | None = None,
                 vlm_only: bool = False) -> None:
        Adapter.__init__(self, hidden_dim, drafter_dim=drafter_dim, vlm_only=vlm_only)
        self._build(hidden_dim, bottleneck_dim, num_blocks, dropout, alpha, wide=True)
