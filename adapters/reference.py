"""Files written by the reference implementation, read safely: its checkpoints (a dict holding
`model_state_dict` and `config`, with the reference classes' parameter names) and its LM head
(`extract_vl_lm_head.py`: a dict holding `lm_head_weight` [V, H]).

A reference checkpoint becomes our class, constructor arguments and state_dict through one
table of parameter names per class (`STATE_KEYS`). L1's checkpoints pickle a small config
dataclass; it is read with `weights_only=True` through a stand-in class allowed by name, so no
code of the file's runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from adapters import seed
from common.errors import CheckpointError


@dataclass
class HiddenAdapterConfig:
    """Stand-in for the reference's L1 config dataclass: plain fields only, never code."""

    hidden_dim: int = 4096
    bottleneck_dim: int = 256
    num_layers: int = 1
    dropout: float = 0.1
    alpha: float = 0.1
    use_layer_norm: bool = True
    use_gelu: bool = True


# Where the reference's scripts import hidden_adapter from, hence the names its pickles carry.
_MODULES = ("feasible.feature_alignment.hidden_adapter", "pipeline.adapter_train.hidden_adapter",
            "hidden_adapter", "__main__")
SAFE_GLOBALS = [(HiddenAdapterConfig, f"{module}.HiddenAdapterConfig") for module in _MODULES]

_LAYER = [
    (r"layers\.(\d+)\.attn_norm\.", r"layers.\1.norm1."),
    (r"layers\.(\d+)\.attn\.in_proj_(weight|bias)$", r"layers.\1.qkv.\2"),
    (r"layers\.(\d+)\.attn\.out_proj\.", r"layers.\1.out."),
    (r"layers\.(\d+)\.ffn_norm\.", r"layers.\1.norm2."),
    (r"layers\.(\d+)\.ffn\.(0|3)\.", r"layers.\1.ffn.\2."),
    (r"alpha$", "alpha"),
]
_NARROW = [(r"(?:layers|blocks)\.(\d+)\.alpha_param$", r"blocks.\1.alpha"),
           (r"(?:layers|blocks)\.(\d+)\.down_proj\.", r"blocks.\1.down."),
           (r"(?:layers|blocks)\.(\d+)\.up_proj\.", r"blocks.\1.up."),
           (r"(?:layers|blocks)\.(\d+)\.layer_norm\.", r"blocks.\1.pre_norm."),
           (r"final_norm\.", "final_norm.")]
_EAGLE_HEAD = [(r"pos_embed$", "positions"), (r"output_norm\.", "out_norm."), (r"output_proj\.", "proj.")]

# Reference parameter name (regex, matched whole) -> ours, per our class.
STATE_KEYS: dict[str, list[tuple[str, str]]] = {
    "BottleneckAdapter": _NARROW,
    "MultiLayerBottleneckAdapter": _NARROW,
    "WideBottleneckAdapter": [(r"input_norm\.", "input_norm."), (r"blocks\.(\d+)\.0\.", r"blocks.\1.down."),
                              (r"blocks\.(\d+)\.1\.", r"blocks.\1.inner_norm."), (r"blocks\.(\d+)\.4\.", r"blocks.\1.up."),
                              (r"alphas\.(\d+)$", r"blocks.\1.alpha"), (r"final_norm\.", "final_norm.")],
    "AttentionAdapter": _LAYER + [(r"output_proj\.0\.", "out_norm."), (r"output_proj\.1\.", "proj.")],
    "EAGLEAdapter": _LAYER + _EAGLE_HEAD + [(r"input_norm\.", "input_norm.")],
    "FusedEAGLEAdapter": _LAYER + _EAGLE_HEAD + [(r"fusion_proj\.", "fuse."), (r"fusion_norm\.", "fuse_norm."),
                                                (r"gate\.0\.", "gate.")],
}


def is_reference_checkpoint(payload: Any) -> bool:
    return isinstance(payload, dict) and isinstance(payload.get("model_state_dict"), dict)


def rename_state(class_name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference's state_dict of a `class_name` level under our parameter names."""
    table = STATE_KEYS[class_name]
    ours: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        for pattern, replacement in table:
            match = re.match(pattern, name)
            if match:
                new = match.expand(replacement) + name[match.end():]
                break
        else:
            raise CheckpointError(f"reference checkpoint: parameter {name!r} is not one of a "
                                  f"{seed.by_class(class_name).reference_class}'s")
        ours[new] = tensor.squeeze(0) if new == "positions" else tensor  # [1, S, H] -> [S, H]
    return ours


@dataclass
class ReferenceCheckpoint:
    class_name: str
    init_kwargs: dict[str, Any]     # for our class, hidden_dim included
    state_dict: dict[str, torch.Tensor]
    epoch: int | None
    metrics: dict[str, Any]


def convert(payload: dict[str, Any], *, vlm_only: bool = False) -> ReferenceCheckpoint:
    """Our class, arguments and parameters for a reference checkpoint. The file does not say
    whether an EAGLE level was trained on the verifier's states (B1): `vlm_only` does."""
    level = seed.by_adapter_type(payload.get("adapter_type"))
    if payload.get("adapter_type") is not None and level is None:
        raise CheckpointError(f"reference checkpoint of unknown adapter_type {payload.get('adapter_type')!r}")
    level = level or seed.by_number(1)
    config = payload.get("config")
    config = vars(config) if isinstance(config, HiddenAdapterConfig) else config
    if not isinstance(config, dict):
        raise CheckpointError("reference checkpoint has no config dict")
    state = payload["model_state_dict"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError("reference checkpoint: model_state_dict must map names to tensors")
    if config.get("use_token_embed"):
        raise CheckpointError("reference checkpoint uses a token embedding (use_token_embed), which adapter-tui "
                              "levels do not have")
    kwargs = _init_kwargs(level, config, state)
    if vlm_only and level.class_name != "FusedEAGLEAdapter":
        kwargs["vlm_only"] = True
    epoch = payload.get("epoch")
    metrics = payload.get("metrics")
    return ReferenceCheckpoint(level.class_name, kwargs, rename_state(level.class_name, state),
                               epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
                               metrics if isinstance(metrics, dict) else {})


def _init_kwargs(level: seed.SeedLevel, config: dict[str, Any], state: dict[str, torch.Tensor]) -> dict[str, Any]:
    def value(key: str) -> Any:
        v = config.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise CheckpointError(f"reference checkpoint config has no valid {key!r}")
        return v

    kwargs: dict[str, Any] = {"hidden_dim": int(value("hidden_dim"))}
    if level.number == 1:
        kwargs.update(bottleneck_dim=int(value("bottleneck_dim")), num_layers=int(value("num_layers")),
                      dropout=float(config.get("dropout", 0.1)), alpha=float(config.get("alpha", 0.1)))
    elif level.number in (2, 3):
        kwargs.update(bottleneck_dim=int(value("bottleneck_dim")), num_blocks=int(value("num_blocks")))
    else:
        kwargs.update(num_heads=int(value("num_heads")), ffn_dim=int(value("ffn_dim")),
                      num_layers=int(value("num_layers")))
        if "pos_embed" in state:
            kwargs["max_seq_len"] = int(state["pos_embed"].shape[-2])
    return kwargs


def lm_head_weight(obj: Any) -> Any:
    """The [V, H] tensor of an LM head file: a bare tensor (ours), or the reference's dict."""
    if isinstance(obj, dict) and "lm_head_weight" in obj:
        return obj["lm_head_weight"]
    return obj
