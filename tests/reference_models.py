"""The reference implementation's adapter classes as its hidden_adapter.py builds them (module
names, order and forward), written here from its source so that tests can make checkpoints in
its layout and compare outputs. Never used by the product."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import torch
from torch import nn

MODULE = "feasible.feature_alignment.hidden_adapter"  # what the reference's trainer imports


@dataclass
class HiddenAdapterConfig:
    hidden_dim: int = 4096
    bottleneck_dim: int = 256
    num_layers: int = 1
    dropout: float = 0.1
    alpha: float = 0.1
    use_layer_norm: bool = True
    use_gelu: bool = True


HiddenAdapterConfig.__module__ = MODULE


def install_module() -> None:
    """Make HiddenAdapterConfig picklable under the reference's module name."""
    for depth in range(1, MODULE.count(".") + 2):
        name = ".".join(MODULE.split(".")[:depth])
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules[MODULE].HiddenAdapterConfig = HiddenAdapterConfig


class Bottleneck(nn.Module):
    def __init__(self, hidden, bottleneck, dropout=0.1, alpha=0.1):
        super().__init__()
        self.alpha_param = nn.Parameter(torch.tensor(alpha))
        self.down_proj = nn.Linear(hidden, bottleneck, bias=False)
        self.up_proj = nn.Linear(bottleneck, hidden, bias=False)
        self.layer_norm = nn.LayerNorm(hidden)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, h):
        return h + self.alpha_param * self.up_proj(self.dropout(self.act(self.down_proj(self.layer_norm(h)))))


class HiddenStateAdapter(nn.Module):  # L1
    def __init__(self, config: HiddenAdapterConfig):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(Bottleneck(config.hidden_dim, config.bottleneck_dim) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.hidden_dim)

    def forward(self, h, mask=None):
        for layer in self.layers:
            h = layer(h)
        return self.final_norm(h)


class MultiLayerBottleneckAdapter(nn.Module):  # L2
    def __init__(self, hidden_dim, bottleneck_dim=256, num_blocks=3):
        super().__init__()
        self.blocks = nn.ModuleList(Bottleneck(hidden_dim, bottleneck_dim) for _ in range(num_blocks))
        self.final_norm = nn.LayerNorm(hidden_dim)

    def forward(self, h, mask=None):
        for block in self.blocks:
            h = block(h)
        return self.final_norm(h)


class WideBottleneckAdapter(nn.Module):  # L3
    def __init__(self, hidden_dim, bottleneck_dim=1024, num_blocks=3, dropout=0.1):
        super().__init__()
        self.input_norm = nn.LayerNorm(hidden_dim)
        self.blocks = nn.ModuleList(nn.Sequential(
            nn.Linear(hidden_dim, bottleneck_dim, bias=False), nn.LayerNorm(bottleneck_dim), nn.GELU(),
            nn.Dropout(dropout), nn.Linear(bottleneck_dim, hidden_dim, bias=False), nn.Dropout(dropout),
        ) for _ in range(num_blocks))
        self.alphas = nn.ParameterList(nn.Parameter(torch.tensor(0.1)) for _ in range(num_blocks))
        self.final_norm = nn.LayerNorm(hidden_dim)

    def forward(self, h, mask=None):
        x = self.input_norm(h)
        for block, alpha in zip(self.blocks, self.alphas):
            x = x + alpha * block(x)
        return self.final_norm(x)


def _layers(hidden, heads, ffn, layers, dropout=0.1):
    return nn.ModuleList(nn.ModuleDict({
        "attn_norm": nn.LayerNorm(hidden),
        "attn": nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True),
        "ffn_norm": nn.LayerNorm(hidden),
        "ffn": nn.Sequential(nn.Linear(hidden, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, hidden),
                             nn.Dropout(dropout)),
    }) for _ in range(layers))


def _run_layers(layers, x, mask, causal):
    seq = x.shape[1]
    attn_mask = torch.triu(torch.full((seq, seq), float("-inf")), diagonal=1) if causal else None
    padding = None if mask is None else ~mask
    for layer in layers:
        normed = layer["attn_norm"](x)
        out, _ = layer["attn"](normed, normed, normed, attn_mask=attn_mask, key_padding_mask=padding, need_weights=False)
        x = x + out
        x = x + layer["ffn"](layer["ffn_norm"](x))
    return x


class AttentionAdapter(nn.Module):  # L4
    def __init__(self, hidden_dim, num_heads=8, ffn_dim=2048, num_layers=1):
        super().__init__()
        self.layers = _layers(hidden_dim, num_heads, ffn_dim, num_layers)
        self.output_proj = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, hidden_dim))
        self.alpha = nn.Parameter(torch.tensor(0.1))

    def forward(self, h, mask=None):
        return h + self.alpha * (self.output_proj(_run_layers(self.layers, h, mask, causal=False)) - h)


class EAGLEStyleAdapter(nn.Module):  # L5, B1
    def __init__(self, hidden_dim, num_heads=8, ffn_dim=2048, num_layers=1, max_seq_len=512):
        super().__init__()
        self.input_norm = nn.LayerNorm(hidden_dim)
        self.pos_embed = nn.Parameter(torch.randn(1, max_seq_len, hidden_dim) * 0.02)
        self.layers = _layers(hidden_dim, num_heads, ffn_dim, num_layers)
        self.output_norm = nn.LayerNorm(hidden_dim)
        self.output_proj = nn.Linear(hidden_dim, hidden_dim)
        self.alpha = nn.Parameter(torch.tensor(0.1))

    def forward(self, h, mask=None):
        x = self.input_norm(h) + self.pos_embed[:, :h.shape[1]]
        out = self.output_proj(self.output_norm(_run_layers(self.layers, x, mask, causal=True)))
        return h + self.alpha * (out - h)


class FusedEAGLEAdapter(nn.Module):  # L5F
    def __init__(self, hidden_dim, num_heads=8, ffn_dim=2048, num_layers=1, max_seq_len=512):
        super().__init__()
        self.fusion_proj = nn.Linear(2 * hidden_dim, hidden_dim)
        self.fusion_norm = nn.LayerNorm(hidden_dim)
        self.gate = nn.Sequential(nn.Linear(2 * hidden_dim, hidden_dim), nn.Sigmoid())
        self.pos_embed = nn.Parameter(torch.randn(1, max_seq_len, hidden_dim) * 0.02)
        self.layers = _layers(hidden_dim, num_heads, ffn_dim, num_layers)
        self.output_norm = nn.LayerNorm(hidden_dim)
        self.output_proj = nn.Linear(hidden_dim, hidden_dim)
        self.alpha = nn.Parameter(torch.tensor(0.1))

    def forward(self, egpt, vl, mask=None):
        both = torch.cat([egpt, vl], dim=-1)
        gate = self.gate(both)
        x = self.fusion_norm(gate * egpt + (1 - gate) * vl + self.fusion_proj(both)) + self.pos_embed[:, :egpt.shape[1]]
        out = self.output_proj(self.output_norm(_run_layers(self.layers, x, mask, causal=True)))
        return vl + self.alpha * (out - vl)


def build(level: str, hidden: int, *, heads: int = 4, ffn: int = 32, bottleneck: int = 16) -> tuple[nn.Module, dict]:
    """A reference model of `level` and the checkpoint payload its save_checkpoint would write."""
    torch.manual_seed(1)
    if level == "L1":
        config = HiddenAdapterConfig(hidden_dim=hidden, bottleneck_dim=bottleneck, num_layers=2)
        model, extra = HiddenStateAdapter(config), {"config": config}
    elif level in ("L2", "L3"):
        cls = MultiLayerBottleneckAdapter if level == "L2" else WideBottleneckAdapter
        model = cls(hidden, bottleneck, 3)
        extra = {"adapter_type": f"{level}_{'MultiLayerBottleneck' if level == 'L2' else 'WideBottleneck'}",
                 "config": {"hidden_dim": hidden, "bottleneck_dim": bottleneck, "num_blocks": 3}}
    else:
        cls, kind = {"L4": (AttentionAdapter, "L4_Attention"), "L5": (EAGLEStyleAdapter, "L5_EAGLE"),
                     "B1": (EAGLEStyleAdapter, "L5_EAGLE"), "L5F": (FusedEAGLEAdapter, "L5F_FusedEAGLE")}[level]
        model = cls(hidden, heads, ffn, 1)
        config = {"hidden_dim": hidden, "num_heads": heads, "ffn_dim": ffn, "num_layers": 1}
        if level in ("L5", "B1"):
            config["use_token_embed"] = False
        extra = {"adapter_type": kind, "config": config}
    with torch.no_grad():  # no zero-initialised branch: every parameter must reach the output
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    payload = {"model_state_dict": model.state_dict(), **extra, "epoch": 7,
               "optimizer_state_dict": {"state": {}, "param_groups": []},
               "metrics": {"loss": 1.25, "cos_sim": 0.79, "accept_90": 0.25}}
    return model.eval(), payload
