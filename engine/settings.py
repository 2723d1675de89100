"""Resolve `adapter-engine train` flags into one validated TrainSettings, before anything is
written: a run that cannot start fails here with a UserInputError (exit 2)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from adapters.errors import UserInputError
from adapters.registry import ARCH_KEYS, LevelSpec, Registry, load_registry

# The seed's --adapter_level numbers; 5 with --vlm_only is B1.
SEED_LEVELS = {1: "L1", 2: "L2", 3: "L3", 4: "L4", 5: "L5", 6: "L5F"}
SEED_VLM_ONLY_LEVELS = {5: "B1"}  # --adapter_level 5 --vlm_only


def seed_level_number(key: str) -> int | None:
    """The seed's --adapter_level number of a level key (B1 is 5, with vlm_only), else None."""
    for table in (SEED_LEVELS, SEED_VLM_ONLY_LEVELS):
        for number, level in table.items():
            if level == key:
                return number
    return None
ARCH_FLAGS = ("bottleneck_dim", "num_blocks", "num_heads", "num_layers", "ffn_dim")
TRAIN_FLAGS = ("num_epochs", "batch_size", "learning_rate", "early_stopping")


@dataclass
class TrainSettings:
    level: str
    train_data: str
    val_data: str | None
    val_split: float
    output_dir: str
    num_epochs: int
    batch_size: int
    learning_rate: float
    early_stopping: int
    seed: int
    device: str
    vlm_only: bool
    arch_overrides: dict[str, Any] = field(default_factory=dict)
    lm_head: str | None = None
    hidden_dim: int | None = None
    config_path: str | None = None
    dataset: str | None = None
    no_eval: bool = False
    precision: str = "auto"
    compile: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainSettings":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def level_key_from_args(level: str | None, adapter_level: int | None, vlm_only: bool) -> str:
    if level and adapter_level is not None:
        raise UserInputError("give either --level or --adapter_level, not both")
    if level:
        return level
    number = 1 if adapter_level is None else adapter_level
    if number not in SEED_LEVELS:
        raise UserInputError(f"--adapter_level must be 1..6 (6 = L5F), got {number}")
    if vlm_only and number in SEED_VLM_ONLY_LEVELS:
        return SEED_VLM_ONLY_LEVELS[number]
    return SEED_LEVELS[number]


def effective_spec(registry: Registry, settings: TrainSettings) -> LevelSpec:
    """The level's spec with --vlm_only applied."""
    spec = registry.level(settings.level)
    if settings.vlm_only and not spec.vlm_only:
        if spec.fused:
            raise UserInputError(f"--vlm_only cannot be used with the fused level {spec.key}")
        spec = LevelSpec(**{**asdict(spec), "vlm_only": True})
    return spec


def resolve(args: Any) -> tuple[TrainSettings, Registry]:
    """Turn parsed train flags into settings, applying the level's training defaults."""
    registry = load_registry(args.config)
    key = level_key_from_args(args.level, args.adapter_level, args.vlm_only)
    spec = registry.level(key)
    train_data, val_data = args.train_data, args.val_data
    if args.dataset:
        if train_data:
            raise UserInputError("give either --dataset or --train_data, not both")
        entry = registry.dataset(args.dataset)
        train_data = str(entry.train)
        val_data = val_data or (str(entry.val) if entry.val else None)
    if not train_data:
        raise UserInputError("no training data: pass --train_data PATH or --dataset NAME (see adapters.toml [datasets])")
    values = {name: getattr(args, name) if getattr(args, name) is not None else spec.train[name] for name in TRAIN_FLAGS}
    for name in ("num_epochs", "batch_size"):
        if values[name] < 1:
            raise UserInputError(f"--{name} must be >= 1, got {values[name]}")
    if values["early_stopping"] < 0:
        raise UserInputError(f"--early_stopping must be >= 0 (0 turns it off), got {values['early_stopping']}")
    if not values["learning_rate"] > 0:
        raise UserInputError(f"--learning_rate must be > 0, got {values['learning_rate']}")
    overrides = {name: getattr(args, name) for name in ARCH_FLAGS if getattr(args, name, None) is not None}
    for name, value in overrides.items():
        if ARCH_KEYS[name] is int and value < 1:
            raise UserInputError(f"--{name} must be >= 1, got {value}")
    if args.device not in ("auto", "cpu", "cuda") and not (args.device.startswith("cuda:") and args.device[5:].isdigit()):
        raise UserInputError(f"--device must be auto, cpu, cuda or cuda:N, got {args.device!r}")
    settings = TrainSettings(
        level=key, train_data=str(Path(train_data)), val_data=str(Path(val_data)) if val_data else None,
        val_split=args.val_split, output_dir=args.output_dir, seed=args.seed, device=args.device,
        vlm_only=args.vlm_only or spec.vlm_only, arch_overrides=overrides, lm_head=args.lm_head,
        hidden_dim=args.hidden_dim, config_path=str(registry.path), dataset=args.dataset,
        no_eval=getattr(args, "no_eval", False), precision=args.precision, compile=args.compile, **values,
    )
    effective_spec(registry, settings)
    return settings, registry
