"""The draft–verify loop: a drafter LM and a trained adapter propose γ tokens through the
verifier's LM head, the verifier checks them in one forward, and both KV caches are cut back to
what was accepted. Greedy (temperature 0) and sampled decoding are both lossless: greedy keeps
the verifier's own argmax, sampling is speculative rejection sampling (Leviathan et al. 2023).

Every decode runs to `max_new_tokens` (EOS is not a stop), so the baseline and the speculative
decode of a prompt produce the same number of tokens and their times compare directly.

Where the time goes is measured per part: the drafter's forwards, the adapter with the LM head,
the verifier's forwards; the rest of the wall time is the loop's own overhead.
"""

from __future__ import annotations

import inspect
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

PARTS = ("drafter", "adapter", "verifier")


class Clock:
    """Seconds spent in each part; on CUDA it waits for the device before reading the time, so a
    part is charged for its own kernels."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.spent = dict.fromkeys(PARTS, 0.0)

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Charge the block to `name`; what runs between blocks is the loop's own overhead."""
        start = self.now()
        yield
        self.spent[name] += self.now() - start


class CachedLM:
    """A causal LM with its KV cache: feed tokens, read the logits (or one hidden state), crop
    the cache back to a length. The cache holds exactly the tokens fed and not cropped."""

    def __init__(self, model: Any, device: torch.device, layer: int | None = None) -> None:
        self.model = model
        self.device = device
        self.layer = layer                   # None: the logits; else hidden_states[layer]
        # The drafter needs a hidden state, not its own vocabulary's logits: its body only.
        self.body = model.base_model if layer is not None else model
        params = inspect.signature(self.body.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        self.cache: Any = None

    def reset(self) -> None:
        from transformers import DynamicCache

        self.cache = DynamicCache()

    @property
    def length(self) -> int:
        return self.cache.get_seq_length() if self.cache is not None else 0

    def feed(self, tokens: list[int]) -> torch.Tensor:
        """[len(tokens), V] logits, or [len(tokens), H] states at `layer`, for the new tokens."""
        ids = torch.tensor([tokens], dtype=torch.long, device=self.device)
        wants_states = self.layer is not None
        out = self.body(input_ids=ids, use_cache=True, output_hidden_states=wants_states, **{self.cache_arg: self.cache})
        return out.hidden_states[self.layer][0] if wants_states else out.logits[0]

    def crop(self, length: int) -> None:
        extra = self.length - length
        if extra > 0:
            self.cache.crop(-extra)  # a negative count removes that many tokens (transformers 4 and 5)


class AdapterDrafter:
    """Draft logits over the verifier's vocabulary: lm_head_V(adapter(h_drafter)). A per-token
    level reads the newest state alone; an attention level reads the drafter states of the whole
    sequence so far (kept here, cut back with the cache), recomputed at each draft: O(S) per
    drafted token for an adapter that is small beside the models."""

    def __init__(self, adapter: torch.nn.Module, head: torch.nn.Module) -> None:
        self.adapter = adapter                 # fp32, as it was trained
        self.head = head                       # the verifier's LM head (its dtype, its bias if any)
        self.head_dtype = next(head.parameters()).dtype
        self.per_token = bool(getattr(adapter, "per_token", False))
        self.states: torch.Tensor | None = None  # [S, Hd]: the states of every position fed

    def reset(self) -> None:
        self.states = None

    def add(self, states: torch.Tensor) -> None:
        states = states.float()
        self.states = states if self.states is None else torch.cat([self.states, states])

    def crop(self, length: int) -> None:
        if self.states is not None:
            self.states = self.states[:length]

    def logits(self) -> torch.Tensor:
        """[V]: the next token's draft logits, from the newest position."""
        source = self.states[-1:] if self.per_token else self.states
        mask = torch.ones(1, source.shape[0], dtype=torch.bool, device=source.device)
        predicted = self.adapter(source[None], None, mask)[0, -1]
        return self.head(predicted.to(self.head_dtype))


@dataclass
class DecodeStats:
    """What one speculative decode (or several, merged) measured."""
    gamma: int
    steps: int = 0                   # verifier forwards
    tokens: int = 0                  # tokens generated
    drafted: int = 0
    accepted: int = 0
    proposed_at: list[int] = field(default_factory=list)   # per draft position k: steps that proposed k
    accepted_at: list[int] = field(default_factory=list)   # ... whose first k drafts were all accepted

    def __post_init__(self) -> None:
        self.proposed_at = self.proposed_at or [0] * self.gamma
        self.accepted_at = self.accepted_at or [0] * self.gamma

    def record_step(self, proposed: int, accepted: int, produced: int) -> None:
        self.steps += 1
        self.tokens += produced
        self.drafted += proposed
        self.accepted += accepted
        for k in range(proposed):
            self.proposed_at[k] += 1
            self.accepted_at[k] += k < accepted

    def merge(self, other: "DecodeStats") -> None:
        for name in ("steps", "tokens", "drafted", "accepted"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.proposed_at = [a + b for a, b in zip(self.proposed_at, other.proposed_at)]
        self.accepted_at = [a + b for a, b in zip(self.accepted_at, other.accepted_at)]

    @property
    def tau(self) -> float | None:
        """Mean tokens per verifier step, the verifier's own token included."""
        return self.tokens / self.steps if self.steps else None

    def accept_by_position(self) -> list[float | None]:
        """Per draft position k: of the steps that drafted k tokens or more, the share whose
        first k drafts were all accepted."""
        return [a / p if p else None for a, p in zip(self.accepted_at, self.proposed_at)]


class Sampler:
    """Greedy at temperature 0, else sampling from softmax(logits / T) with a seeded generator."""

    def __init__(self, temperature: float, seed: int, device: torch.device) -> None:
        self.temperature = temperature
        self.generator = torch.Generator(device=device).manual_seed(seed) if temperature > 0 else None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float() / self.temperature, dim=-1)

    def draw(self, probs: torch.Tensor) -> int:
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def uniform(self, device: torch.device) -> float:
        return float(torch.rand((), generator=self.generator, device=device))


def accept_greedy(drafts: list[int], verifier_logits: torch.Tensor) -> tuple[int, int]:
    """(drafts accepted, the verifier's token after them): the longest prefix on which the
    verifier's argmax agrees, then the verifier's own token."""
    choice = verifier_logits.argmax(-1).tolist()           # [g + 1]
    accepted = next((i for i, d in enumerate(drafts) if d != choice[i]), len(drafts))
    return accepted, choice[accepted]


def accept_sampled(drafts: list[int], draft_probs: list[torch.Tensor], verifier_logits: torch.Tensor,
                   sampler: Sampler) -> tuple[int, int]:
    """Speculative rejection sampling: draft i is kept with probability min(1, p_i(d)/q_i(d));
    at the first rejection the token is drawn from norm(max(0, p_i − q_i)); if every draft is
    kept, the bonus token is drawn from p_g. The output is distributed as the verifier's own."""
    p = sampler.probs(verifier_logits)                      # [g + 1, V]
    for i, (d, q) in enumerate(zip(drafts, draft_probs)):
        if sampler.uniform(p.device) * q[d] < p[i, d]:      # u < p/q without dividing by a tiny q
            continue
        residual = torch.clamp(p[i] - q, min=0)
        total = residual.sum()
        return i, sampler.draw(residual / total if total > 0 else p[i])
    return len(drafts), sampler.draw(p[len(drafts)])


@torch.no_grad()
def speculative_decode(prompt: list[int], drafter: CachedLM, adapter: AdapterDrafter, verifier: CachedLM,
                       gamma: int, max_new_tokens: int, sampler: Sampler, clock: Clock) -> tuple[list[int], DecodeStats]:
    """Generate `max_new_tokens` tokens after `prompt`. At the start of every step the verifier's
    cache holds all committed tokens but the last (which it reads with the drafts), and the
    drafter's cache a prefix of them (it catches up, then drafts)."""
    stats = DecodeStats(gamma)
    drafter.reset(), adapter.reset(), verifier.reset()
    tokens = list(prompt)
    if len(prompt) > 1:
        with clock.part("verifier"):
            verifier.feed(prompt[:-1])
    generated = 0
    while generated < max_new_tokens:
        g = min(gamma, max_new_tokens - generated - 1)   # the verifier adds one token: never overshoot
        drafts: list[int] = []
        draft_probs: list[torch.Tensor] = []
        pending = tokens[drafter.length:]                  # committed tokens the drafter has not read
        for _ in range(g):
            with clock.part("drafter"):
                adapter.add(drafter.feed(pending))
            with clock.part("adapter"):
                logits = adapter.logits()
                if sampler.greedy:
                    token = int(logits.argmax())
                else:
                    draft_probs.append(sampler.probs(logits))
                    token = sampler.draw(draft_probs[-1])
            drafts.append(token)
            pending = [token]
        with clock.part("verifier"):
            verifier_logits = verifier.feed([tokens[-1], *drafts])
        if sampler.greedy:
            accepted, bonus = accept_greedy(drafts, verifier_logits)
        else:
            accepted, bonus = accept_sampled(drafts, draft_probs, verifier_logits, sampler)
        tokens += [*drafts[:accepted], bonus]
        generated += accepted + 1
        stats.record_step(g, accepted, accepted + 1)
        verifier.crop(len(tokens) - 1)
        kept = min(drafter.length, len(tokens) - 1)
        drafter.crop(kept)
        adapter.crop(kept)
    return tokens[len(prompt):], stats


@torch.no_grad()
def baseline_decode(prompt: list[int], verifier: CachedLM, max_new_tokens: int, clock: Clock) -> list[int]:
    """The verifier alone, greedy, with its KV cache."""
    verifier.reset()
    out: list[int] = []
    with clock.part("verifier"):
        logits = verifier.feed(prompt)
        while True:
            token = int(logits[-1].argmax())
            out.append(token)
            if len(out) == max_new_tokens:
                break
            logits = verifier.feed([token])
    return out
