"""The contract every adapter level follows, so the trainer calls all levels the same way."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from adapters.padding import Padding


class Adapter(nn.Module):
    """Maps drafter (EventGPT) hidden states into the verifier (Video-LLaVA) space.

    Widths: `hidden_dim` is the verifier's Hv (every output and every residual is Hv wide);
    `drafter_dim` is the drafter's Hd (default Hv). A level reading drafter states of another
    width first maps them to Hv with `input_proj` (see `width_projection`), so `x + adapter(x)`
    always adds two Hv vectors; at Hd == Hv there is no projection at all, and the modules,
    parameter names and initialisation are exactly those of the equal-width level.

    Every level computes on the valid tokens alone ([T, H], see adapters.padding); only
    attention puts them back into the padded layout. Subclasses implement `adapt(tokens, padding)`
    for one input stream, or override `predict` when they consume both streams.

    Class attributes:
        default_consumes: which stream the level reads: "drafter", "verifier" or "both".
            `vlm_only=True` turns a drafter-reading level into a verifier-reading one (B1).
        predicts_next: whether the level is trained with the dual loss (also predicts the
            verifier state of the next position).
        per_token: whether each position's output depends on that position alone.
    """

    default_consumes: ClassVar[str] = "drafter"
    predicts_next: ClassVar[bool] = False
    per_token: ClassVar[bool] = False

    def __init__(self, hidden_dim: int, *, drafter_dim: int | None = None, vlm_only: bool = False) -> None:
        super().__init__()
        if vlm_only and self.default_consumes != "drafter":
            raise ValueError(f"{type(self).__name__} cannot be trained vlm_only")
        self.hidden_dim = hidden_dim
        self.drafter_dim = hidden_dim if drafter_dim is None else drafter_dim
        self.vlm_only = vlm_only
        self.consumes = "verifier" if vlm_only else self.default_consumes
        if self.consumes != "verifier" and self.drafter_dim != hidden_dim:
            # registered only when the widths differ: equal widths keep the reference's modules and RNG order
            self.input_proj = width_projection(self.drafter_dim, hidden_dim)

    def to_verifier_width(self, drafter: torch.Tensor) -> torch.Tensor:
        """Drafter tokens [T, Hd] in the verifier's width [T, Hv] (unchanged when Hd == Hv)."""
        proj = getattr(self, "input_proj", None)
        return drafter if proj is None else proj(drafter)

    def forward(self, egpt: torch.Tensor | None, vl: torch.Tensor | None, mask: torch.Tensor,
                packed: bool = False) -> torch.Tensor:
        """Predict verifier states from the streams this level consumes.

        Args:
            egpt: drafter states [B, S, Hd] (may be None when the level reads only the verifier).
            vl: verifier states [B, S, Hv] (may be None when the level reads only the drafter).
            mask: bool [B, S], True at valid (non-padded) positions.
            packed: egpt and vl hold only the valid tokens, [T, H] in `tensor[mask]` order (as
                the loaders deliver them), and so does the result. Otherwise the result is
                [B, S, Hv] with zeros at padded positions.
        """
        padding = Padding(mask)
        if not packed:
            egpt, vl = (None if x is None else padding.gather(x) for x in (egpt, vl))
        tokens = self.predict(egpt, vl, padding)
        return tokens if packed else padding.scatter(tokens)

    def source(self, egpt: torch.Tensor | None, vl: torch.Tensor | None) -> torch.Tensor:
        """The stream this level reads (both arguments in the same layout)."""
        source = vl if self.consumes == "verifier" else egpt
        if source is None:
            raise ValueError(f"{type(self).__name__} needs {self.consumes} states")
        return source

    def predict(self, egpt: torch.Tensor | None, vl: torch.Tensor | None, padding: Padding) -> torch.Tensor:
        """Valid tokens [T, Hd or Hv] in, predictions [T, Hv] out; levels that read both streams override this."""
        source = self.source(egpt, vl)
        return self.adapt(source if self.consumes == "verifier" else self.to_verifier_width(source), padding)

    def adapt(self, tokens: torch.Tensor, padding: Padding) -> torch.Tensor:  # pragma: no cover
        """Map the valid tokens [T, Hv] of the source stream (already in the verifier's width) to predictions [T, Hv]."""
        raise NotImplementedError


def width_projection(in_dim: int, out_dim: int) -> nn.Linear:
    """Hd → Hv without bias, (semi-)orthogonal at init: the nearest thing to the identity between
    two widths, so every drafter direction keeps its length (Hd < Hv) or the projection keeps the
    leading Hv directions (Hd > Hv), and the levels' identity-like starts stay near the identity."""
    proj = nn.Linear(in_dim, out_dim, bias=False)
    nn.init.orthogonal_(proj.weight)
    return proj
