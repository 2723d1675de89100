"""The contract every adapter level follows, so the trainer calls all levels the same way."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from adapters.padding import Padding


class Adapter(nn.Module):
    """Maps drafter (EventGPT) hidden states into the verifier (Video-LLaVA) space.

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

    def __init__(self, hidden_dim: int, *, vlm_only: bool = False) -> None:
        super().__init__()
        if vlm_only and self.default_consumes != "drafter":
            raise ValueError(f"{type(self).__name__} cannot be trained vlm_only")
        self.hidden_dim = hidden_dim
        self.vlm_only = vlm_only
        self.consumes = "verifier" if vlm_only else self.default_consumes

    def forward(self, egpt: torch.Tensor | None, vl: torch.Tensor | None, mask: torch.Tensor,
                packed: bool = False) -> torch.Tensor:
        """Predict verifier states from the streams this level consumes.

        Args:
            egpt: drafter states [B, S, H] (may be None when the level reads only the verifier).
            vl: verifier states [B, S, H] (may be None when the level reads only the drafter).
            mask: bool [B, S], True at valid (non-padded) positions.
            packed: egpt and vl hold only the valid tokens, [T, H] in `tensor[mask]` order (as
                the loaders deliver them), and so does the result. Otherwise the result is
                [B, S, H] with zeros at padded positions.
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
        """Valid tokens [T, H] in, predictions [T, H] out; levels that read both streams override this."""
        return self.adapt(self.source(egpt, vl), padding)

    def adapt(self, tokens: torch.Tensor, padding: Padding) -> torch.Tensor:  # pragma: no cover
        """Map the valid tokens [T, H] of the source stream to predictions [T, H]."""
        raise NotImplementedError
