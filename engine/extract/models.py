"""The two models, through Hugging Face transformers (an optional extra: pip install -e
'.[extract]'). They load with `from_pretrained` from a local directory or the hub cache
(local files only when given a directory, so no network is touched); `trust_remote_code` stays
off unless asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from common.errors import UserInputError
from engine.data.packed import DTYPES


def transformers_module():
    try:
        import transformers
    except ImportError:
        raise UserInputError("extract needs Hugging Face transformers: pip install -e '.[extract]'") from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars would drown our own
    return transformers


def _source(name: str) -> dict[str, Any]:
    return {"local_files_only": Path(name).exists()}


def load_config(name: str, flag: str, trust_remote_code: bool) -> Any:
    transformers = transformers_module()
    try:
        return transformers.AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code, **_source(name))
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{flag} {name}: cannot read its config ({str(exc).strip().splitlines()[0]}); give a "
                             "model directory or a model name in the local Hugging Face cache") from None


def describe(config: Any) -> dict[str, Any]:
    """Hidden size, layers (hidden_states has one more entry) and the longest input."""
    positions = next((getattr(config, k) for k in ("max_position_embeddings", "n_positions", "n_ctx")
                      if isinstance(getattr(config, k, None), int)), None)
    return {"hidden_size": getattr(config, "hidden_size", None), "layers": getattr(config, "num_hidden_layers", None),
            "max_positions": positions, "model_type": getattr(config, "model_type", None),
            "name": getattr(config, "_name_or_path", None), "revision": getattr(config, "_commit_hash", None)}


def load_tokenizer(name: str, flag: str, trust_remote_code: bool) -> Any:
    transformers = transformers_module()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code,
                                                               **_source(name))
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{flag} {name}: cannot load its tokenizer ({str(exc).strip().splitlines()[0]})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise UserInputError(f"{flag} {name}: its tokenizer has no fast (Rust) version, which gives the character "
                             "offsets the alignment needs")
    return tokenizer


def load_model(name: str, flag: str, dtype: str, device: torch.device, trust_remote_code: bool) -> Any:
    transformers = transformers_module()
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            name, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code, **_source(name))
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{flag} {name}: cannot load the model ({str(exc).strip().splitlines()[0]})") from None
    return model.to(device).eval()


@torch.no_grad()
def hidden_states(model: Any, sequences: list[list[int]], layer: int, device: torch.device) -> list[torch.Tensor]:
    """hidden_states[layer] of each token sequence ([T_i, H], float32 on the CPU). Sequences are
    padded on the right: a causal model's state at a position never sees what follows it."""
    longest = max(len(s) for s in sequences)
    ids = torch.zeros(len(sequences), longest, dtype=torch.long)
    mask = torch.zeros(len(sequences), longest, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
    states = out.hidden_states[layer].float().cpu()
    return [states[row, : len(seq)] for row, seq in enumerate(sequences)]


def lm_head(model: Any) -> torch.Tensor:
    """The verifier's output projection [V, H]."""
    head = model.get_output_embeddings()
    if head is None or not hasattr(head, "weight"):
        raise UserInputError("the verifier has no output embedding to save as lm_head.pt")
    return head.weight.detach().float().cpu().clone()


def early_exit(model: Any, layers: int) -> Any:
    """The model's first `layers` decoder layers (then its final norm), sharing its weights: the
    drafter of self-speculation. The model itself is left whole."""
    import copy

    base = model.base_model
    total = model.config.num_hidden_layers
    name = next((n for n, child in base.named_children() if isinstance(child, torch.nn.ModuleList) and len(child) == total),
                None)
    if name is None:
        raise UserInputError(f"--drafter_layers: cannot find the decoder layers of this {type(model).__name__}")
    config = copy.copy(model.config)
    config.num_hidden_layers = layers
    short_base = copy.copy(base)
    short_base._modules = {**base._modules, name: torch.nn.ModuleList(list(getattr(base, name))[:layers])}
    short_base.config = config
    short = copy.copy(model)
    short._modules = {**model._modules, model.base_model_prefix: short_base}
    short.config = config
    return short
