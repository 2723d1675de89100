"""Resolve `adapter-engine train` flags into one validated TrainSettings, before anything is
written: a run that cannot start fails here with a UserInputError (exit 2).

A run is described in one of two ways:
- `--level KEY`: any level of adapters.toml, whose defaults fill every flag left out;
- the seed's own flags (`--adapter_level N`, 1 when no level is named): the level as the
  reference builds it, and the reference CLI's defaults for every flag left out. With
  `--output_dir D` such a run is D/<prefix>_<YYYYmmdd_HHMMSS>, as the reference writes it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from adapters import seed
from common.errors import UserInputError
from adapters.registry import ARCH_KEYS, LevelSpec, Registry, accepted_arch_keys, load_registry

ARCH_FLAGS = ("bottleneck_dim", "num_blocks", "num_heads", "num_layers", "ffn_dim")
TRAIN_FLAGS = ("num_epochs", "batch_size", "learning_rate", "early_stopping")
LAYOUTS = ("levels", "seed")  # RUNS/<LEVEL>/<LEVEL>_<stamp>, or OUTPUT_DIR/<prefix>_<stamp>
DEFAULT_RUNS = "runs"
MAX_SEED = 2**63 - 1  # torch.manual_seed takes a signed 64-bit seed


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
    seed_level: int | None = None   # --adapter_level: the level as the reference builds it
    layout: str = "levels"
    init_from: str | None = None    # a checkpoint (or run directory) whose weights start the run

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainSettings":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def check_device_name(name: str) -> str:
    """auto, cpu, cuda or cuda:N (whether that device exists is engine.device.pick_device's to say)."""
    if name not in ("auto", "cpu", "cuda") and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise UserInputError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    return name


def seed_spec(number: int, vlm_only: bool) -> LevelSpec:
    """Level `number` as the reference's CLI builds it: its class and argparse defaults, whatever
    adapters.toml says."""
    try:
        level = seed.by_number(number)
    except KeyError as exc:
        raise UserInputError(exc.args[0]) from None
    if vlm_only and level.class_name == "FusedEAGLEAdapter":
        raise UserInputError("--vlm_only cannot be used with --adapter_level 6 (L5F reads both streams); "
                             "use --adapter_level 5 --vlm_only for B1")
    accepted = accepted_arch_keys(level.class_name)
    return LevelSpec(
        key=seed.level_key(number, vlm_only), class_name=level.class_name, name=level.name,
        description=f"--adapter_level {number}{' --vlm_only' if vlm_only else ''}, as the reference builds it",
        arch={k: v for k, v in seed.arch_defaults(number).items() if k in accepted},
        train=dict(seed.TRAIN_DEFAULTS), vlm_only=vlm_only,
    )


def effective_spec(registry: Registry, settings: TrainSettings) -> LevelSpec:
    """The level's spec: the seed's for a seed command, else adapters.toml's with --vlm_only applied."""
    if settings.seed_level is not None:
        return seed_spec(settings.seed_level, settings.vlm_only)
    spec = registry.level(settings.level)
    if settings.vlm_only and not spec.vlm_only:
        if spec.fused:
            raise UserInputError(f"--vlm_only cannot be used with the fused level {spec.key}")
        spec = LevelSpec(**{**asdict(spec), "vlm_only": True})
    return spec


def ignored_arch_flags(spec: LevelSpec, overrides: dict[str, Any]) -> list[str]:
    """The architecture flags given that the level does not take."""
    accepted = accepted_arch_keys(spec.class_name)
    return [name for name in overrides if name not in accepted]


def ignored_warning(spec: LevelSpec, names: list[str]) -> str:
    flags = ", ".join(f"--{name}" for name in names)
    hint = ""
    if spec.class_name == "BottleneckAdapter" and "num_blocks" in names:
        hint = " (L1 stacks --num_layers blocks, as in the reference)"
    elif "num_layers" in names and spec.class_name in ("MultiLayerBottleneckAdapter", "WideBottleneckAdapter"):
        hint = " (L2 and L3 stack --num_blocks blocks, as in the reference)"
    return f"{flags} does not apply to {spec.key} ({spec.class_name}) and is ignored{hint}"


def resolve(args: Any) -> tuple[TrainSettings, Registry]:
    """Turn parsed train flags into settings, applying the level's (or the seed's) defaults."""
    registry = load_registry(args.config)
    if args.level and args.adapter_level is not None:
        raise UserInputError("give either --level or --adapter_level, not both")
    seed_level = None if args.level else (1 if args.adapter_level is None else args.adapter_level)
    if seed_level is not None:
        spec = seed_spec(seed_level, args.vlm_only)
    else:
        spec = registry.level(args.level)
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
    if not (values["learning_rate"] > 0 and math.isfinite(values["learning_rate"])):
        raise UserInputError(f"--learning_rate must be a finite number > 0, got {values['learning_rate']}")
    if not 0 <= args.seed <= MAX_SEED:
        raise UserInputError(f"--seed must be between 0 and {MAX_SEED} (2^63 - 1), got {args.seed}")
    if not 0 < args.val_split < 1:
        raise UserInputError(f"--val_split must be between 0 and 1, got {args.val_split}")
    overrides = {name: getattr(args, name) for name in ARCH_FLAGS if getattr(args, name, None) is not None}
    for name, value in overrides.items():
        if ARCH_KEYS[name] is int and value < 1:
            raise UserInputError(f"--{name} must be >= 1, got {value}")
    check_device_name(args.device)
    output_dir, layout = _output(args, seed_level is not None)
    settings = TrainSettings(
        level=spec.key, train_data=str(Path(train_data)), val_data=str(Path(val_data)) if val_data else None,
        val_split=args.val_split, output_dir=output_dir, seed=args.seed, device=args.device,
        vlm_only=args.vlm_only or spec.vlm_only, arch_overrides=overrides, lm_head=args.lm_head,
        hidden_dim=args.hidden_dim, config_path=str(registry.path), dataset=args.dataset,
        no_eval=getattr(args, "no_eval", False), precision=args.precision, compile=args.compile,
        seed_level=seed_level, layout=layout, init_from=getattr(args, "init_from", None), **values,
    )
    effective_spec(registry, settings)
    return settings, registry


def _output(args: Any, seed_mode: bool) -> tuple[str, str]:
    """(directory, layout). `--runs` is a runs directory (RUNS/<LEVEL>/...); `--output_dir` is the
    seed's flag: in a seed command the run goes straight into it, as the reference writes it;
    with --level it names the runs directory, as --runs does."""
    runs, output_dir = getattr(args, "runs", None), args.output_dir
    if runs and output_dir:
        raise UserInputError("give either --runs or --output_dir, not both")
    if output_dir:
        return output_dir, "seed" if seed_mode else "levels"
    return runs or DEFAULT_RUNS, "levels"
