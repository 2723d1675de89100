"""The reference implementation's level numbers, names and CLI defaults, in one table.

The reference is the seed's own code (xifan-zhang/EventGPT: pipeline/adapter_train/
train_hidden_adapter.py and hidden_adapter.py). Its `--adapter_level N` picks a level by number
(6 is L5F; `--vlm_only` makes any level read the verifier's states and names its run B1), and
every flag left out takes its argparse default. Torch-free: the TUI reads it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SeedLevel:
    number: int                # --adapter_level
    key: str                   # our level key, and the reference's run-directory prefix
    class_name: str            # our class
    name: str                  # config.json adapter.name
    reference_class: str       # the class the reference builds
    adapter_type: str | None   # the reference checkpoint's `adapter_type` (L1's checkpoints have none)


LEVELS: tuple[SeedLevel, ...] = (
    SeedLevel(1, "L1", "BottleneckAdapter", "Bottleneck", "HiddenStateAdapter", None),
    SeedLevel(2, "L2", "MultiLayerBottleneckAdapter", "MultiLayerBottleneck", "MultiLayerBottleneckAdapter",
              "L2_MultiLayerBottleneck"),
    SeedLevel(3, "L3", "WideBottleneckAdapter", "WideBottleneck", "WideBottleneckAdapter", "L3_WideBottleneck"),
    SeedLevel(4, "L4", "AttentionAdapter", "Attention", "AttentionAdapter", "L4_Attention"),
    SeedLevel(5, "L5", "EAGLEAdapter", "EAGLE", "EAGLEStyleAdapter", "L5_EAGLE"),
    SeedLevel(6, "L5F", "FusedEAGLEAdapter", "FusedEAGLE", "FusedEAGLEAdapter", "L5F_FusedEAGLE"),
)
NUMBERS = tuple(level.number for level in LEVELS)
VLM_ONLY_PREFIX = "B1"        # any --vlm_only run; our B1 level is L5 reading the verifier
VLM_ONLY_LEVEL = 5

# The reference CLI's argparse defaults (bottleneck_dim: 256, or 1024 for level 3).
TRAIN_DEFAULTS: dict[str, Any] = {"num_epochs": 50, "batch_size": 64, "learning_rate": 1e-3, "early_stopping": 10}
VAL_SPLIT = 0.1
ARCH_DEFAULTS: dict[str, Any] = {"num_blocks": 3, "num_heads": 8, "num_layers": 1, "ffn_dim": 2048}
# Not flags of the reference: fixed in its classes.
FIXED_ARCH: dict[str, Any] = {"dropout": 0.1, "alpha": 0.1, "max_seq_len": 512}
# Its evaluation's timing flags (measure_feature_acceptance.py), in ms, with the defaults it
# measured for EventGPT and Video-LLaVA, and the output length of its end-to-end estimate.
TIMING_MS: dict[str, float] = {"egpt_prefill_ms": 130.0, "egpt_per_token_ms": 25.0, "vl_prefill_ms": 310.0,
                               "vl_per_token_ms": 25.0, "adapter_latency_ms": 1.5}
OUTPUT_TOKENS = 50


def by_number(number: int) -> SeedLevel:
    for level in LEVELS:
        if level.number == number:
            return level
    raise KeyError(f"--adapter_level must be one of {', '.join(map(str, NUMBERS))} (6 = L5F), got {number}")


def by_class(class_name: str) -> SeedLevel | None:
    return next((level for level in LEVELS if level.class_name == class_name), None)


def by_adapter_type(adapter_type: str | None) -> SeedLevel | None:
    return next((level for level in LEVELS if level.adapter_type == adapter_type), None)


def arch_defaults(number: int) -> dict[str, Any]:
    """Every architecture value the reference's CLI passes (or fixes) for level `number`."""
    return {"bottleneck_dim": 1024 if number == 3 else 256, **ARCH_DEFAULTS, **FIXED_ARCH}


def level_key(number: int, vlm_only: bool) -> str:
    """Our level key for a seed command: its level, except 5 with --vlm_only, which is B1."""
    if vlm_only and number == VLM_ONLY_LEVEL:
        return VLM_ONLY_PREFIX
    return by_number(number).key


def run_prefix(number: int, vlm_only: bool) -> str:
    """The reference's run-directory prefix: B1 for any --vlm_only run, else L1..L5, L5F."""
    return VLM_ONLY_PREFIX if vlm_only else by_number(number).key


def task_name(class_name: str, vlm_only: bool) -> str | None:
    """config.json `task` as the reference writes it (train_L4_Attention, train_B1_VLMOnly_EAGLE,
    train_L5F_FusedEAGLE); None for a class the reference does not have."""
    level = by_class(class_name)
    if level is None:
        return None
    return f"train_{VLM_ONLY_PREFIX}_VLMOnly_{level.name}" if vlm_only else f"train_{level.key}_{level.name}"


def key_from_config(config: dict) -> str | None:
    """The level of a run from the reference's config.json (no `level_key` there): B1 for a
    vlm_only run, else by `adapter.level`."""
    adapter = config.get("adapter") if isinstance(config.get("adapter"), dict) else {}
    number = adapter.get("level")
    if isinstance(number, bool) or not isinstance(number, int) or number not in NUMBERS:
        return None
    if config.get("vlm_only") is True or str(config.get("task", "")).startswith(f"train_{VLM_ONLY_PREFIX}_"):
        return VLM_ONLY_PREFIX
    return by_number(number).key
