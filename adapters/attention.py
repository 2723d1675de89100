"""Sequence adapters built on one pre-norm transformer layer: L4 Attention, L5 EAGLE (and B1,
which is L5 reading verifier states), L5F Fused EAGLE. Dropout and initialisation are the
reference's (its layers are nn.MultiheadAttention plus an FFN, written out by hand)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adapters.base import Adapter
from adapters.padding import Padding


def attention_mask(mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """Boolean [B, 1, S, S] mask for scaled_dot_product_attention (True = may attend).

    Valid queries see only valid keys (and only earlier ones when causal). Every query may
    also see itself, so a padded row is never fully masked: a fully masked softmax gives NaN,
    and NaN at a padded position would leak into gradients through 0 * NaN.
    """
    seq = mask.shape[1]
    allowed = mask[:, None, None, :].expand(-1, 1, seq, seq)
    if causal:
        allowed = allowed & torch.ones(seq, seq, dtype=torch.bool, device=mask.device).tril()
    return allowed | torch.eye(seq, dtype=torch.bool, device=mask.device)


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: x + MHA(LN(x)); x + FFN(LN(x)), GELU FFN.

    The parameters and initialisation of nn.MultiheadAttention (q, k, v stacked in one projection,
    Xavier-uniform, zero biases) and the reference's dropout: on the attention probabilities and
    twice in the FFN, none on the attention output. Attention goes through
    F.scaled_dot_product_attention so fused kernels are used where the hardware has them.
    """

    def __init__(self, hidden_dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        if hidden_dim % num_heads:
            raise ValueError(f"num_heads {num_heads} does not divide hidden size {hidden_dim}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(hidden_dim)
        self.qkv = nn.Linear(hidden_dim, 3 * hidden_dim)
        self.out = nn.Linear(hidden_dim, hidden_dim)
        self.norm2 = nn.LayerNorm(hidden_dim)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, hidden_dim),
            nn.Dropout(dropout),
        )
        nn.init.xavier_uniform_(self.qkv.weight)
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, padding: Padding, attn_mask: torch.Tensor) -> torch.Tensor:
        """x: the valid tokens [T, H]. Everything but attention is per token, so only q, k, v
        are padded (zeros) into [B, S] and only the attended values gathered back."""
        (batch, seq), hidden = padding.mask.shape, x.shape[-1]
        qkv = padding.scatter(self.qkv(self.norm1(x)))
        q, k, v = qkv.view(batch, seq, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.out(padding.gather(attended.transpose(1, 2).reshape(batch, seq, hidden)))
        return x + self.ffn(self.norm2(x))


def identity_linear(hidden_dim: int) -> nn.Linear:
    proj = nn.Linear(hidden_dim, hidden_dim)
    with torch.no_grad():
        proj.weight.copy_(torch.eye(hidden_dim))
        proj.bias.zero_()
    return proj


class AttentionAdapter(Adapter):
    """L4: transformer layer(s) with a padding mask, LayerNorm and an identity-initialised
    projection; output = input + α · (proj − input). 100,714,497 params at H=4096.

    Drafter width Hd ≠ Hv (L4, L5): an input projection Hd → Hv first, and `input` above is the
    projected drafter state. The identity-initialised output projection cannot take the width
    change instead: the residual mixes the input itself into the output, so it must be Hv wide.
    """

    causal = False

    def __init__(self, hidden_dim: int, num_heads: int = 8, num_layers: int = 1, ffn_dim: int = 2048,
                 dropout: float = 0.1, alpha: float = 0.1, *, drafter_dim: int | None = None,
                 vlm_only: bool = False) -> None:
        super().__init__(hidden_dim, drafter_dim=drafter_dim, vlm_only=vlm_only)
        self.layers = nn.ModuleList(
            TransformerLayer(hidden_dim, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )
        self.out_norm = nn.LayerNorm(hidden_dim)
        self.proj = identity_linear(hidden_dim)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def core(self, x: torch.Tensor, padding: Padding) -> torch.Tensor:
        attn_mask = attention_mask(padding.mask, self.causal)
        for layer in self.layers:
            x = layer(x, padding, attn_mask)
        return self.proj(self.out_norm(x))

    def adapt(self, tokens: torch.Tensor, padding: Padding) -> torch.Tensor:
        return tokens + self.alpha * (self.core(tokens, padding) - tokens)


class EAGLEAdapter(AttentionAdapter):
    """L5 (and B1 with vlm_only): input LayerNorm, learned positions, causal layer(s), output
    LayerNorm and identity projection; trained with the dual loss to also predict the next
    verifier state. 102,819,841 params at H=4096."""

    causal = True
    predicts_next = True

    def __init__(self, hidden_dim: int, num_heads: int = 8, num_layers: int = 1, ffn_dim: int = 2048,
                 dropout: float = 0.1, alpha: float = 0.1, max_seq_len: int = 512,
                 *, drafter_dim: int | None = None, vlm_only: bool = False) -> None:
        super().__init__(hidden_dim, num_heads, num_layers, ffn_dim, dropout, alpha,
                         drafter_dim=drafter_dim, vlm_only=vlm_only)
        self.input_norm: nn.Module = nn.LayerNorm(hidden_dim)
        self.positions = nn.Parameter(nn.init.trunc_normal_(torch.empty(max_seq_len, hidden_dim), std=0.02))

    def core(self, x: torch.Tensor, padding: Padding) -> torch.Tensor:
        if padding.seq_len > self.positions.shape[0]:
            raise ValueError(f"sequence length {padding.seq_len} exceeds max_seq_len {self.positions.shape[0]}")
        return super().core(self.input_norm(x) + self.positions[padding.positions], padding)


class FusedEAGLEAdapter(EAGLEAdapter):
    """L5F: gate = σ(W_g [egpt; vl]); fused = gate·egpt + (1−gate)·vl + W_f [egpt; vl], LayerNorm;
    then the L5 causal core (the fusion norm replaces L5's input norm);
    output = vl + α · (core − vl). 169,936,897 params at H=4096.

    Drafter width Hd ≠ Hv: the drafter stream is projected Hd → Hv first, and the gate, the
    fusion and the gated mix all take the projected stream, so the gate still picks per
    dimension between two states of one space (the verifier's); the residual is on vl, already Hv.
    """

    default_consumes = "both"

    def __init__(self, hidden_dim: int, num_heads: int = 8, num_layers: int = 1, ffn_dim: int = 2048,
                 dropout: float = 0.1, alpha: float = 0.1, max_seq_len: int = 512,
                 *, drafter_dim: int | None = None, vlm_only: bool = False) -> None:
        super().__init__(hidden_dim, num_heads, num_layers, ffn_dim, dropout, alpha, max_seq_len,
                         drafter_dim=drafter_dim, vlm_only=vlm_only)
        self.input_norm = nn.Identity()
        self.gate = nn.Linear(2 * hidden_dim, hidden_dim)
        self.fuse = nn.Linear(2 * hidden_dim, hidden_dim)
        self.fuse_norm = nn.LayerNorm(hidden_dim)
        nn.init.xavier_uniform_(self.fuse.weight)
        nn.init.zeros_(self.fuse.bias)

    def predict(self, egpt: torch.Tensor | None, vl: torch.Tensor | None, padding: Padding) -> torch.Tensor:
        if egpt is None or vl is None:
            raise ValueError("FusedEAGLEAdapter needs both drafter and verifier states")
        egpt = self.to_verifier_width(egpt)
        both = torch.cat([egpt, vl], dim=-1)
        gate = torch.sigmoid(self.gate(both))
        fused = self.fuse_norm(gate * egpt + (1 - gate) * vl + self.fuse(both))
        return vl + self.alpha * (self.core(fused, padding) - vl)
