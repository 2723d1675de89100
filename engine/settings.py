"""The settings of a training run, defined once.

`FIELDS` is the one table of training fields: each field's type, range check, where its
default comes from, its help and its label in the app's Launch form. It generates the flags
of `adapter-engine train` and `queue add`, the Launch form and its validators, and what a queue
job stores (a validated TrainSettings, never command-line flags). `resolve` turns parsed flags
into settings; every check runs before anything is written (a UserInputError is exit 2).

A run is described in one of two ways:
- `--level KEY`: any level of adapters.toml, whose defaults fill every field left out;
- the seed's own flags (`--adapter_level N`, 1 when no level is named): the level as the
  reference builds it, and the reference CLI's defaults for every field left out. With
  `--output_dir D` such a run is D/<prefix>_<YYYYmmdd_HHMMSS>, as the reference writes it.
Torch-free: the app imports it.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from adapters import seed
from adapters.registry import LevelSpec, Registry, accepted_arch_keys, load_registry
from common.errors import UserInputError
from engine.rundir.layout import resolve_runs_dir

MAX_SEED = 2**63 - 1  # torch.manual_seed takes a signed 64-bit seed
LAYOUTS = ("levels", "seed")  # RUNS/<LEVEL>/<LEVEL>_<stamp>, or OUTPUT_DIR/<prefix>_<stamp>
DEVICE_HELP = "auto, cpu, cuda or cuda:N"


@dataclass(frozen=True)
class Field:
    """One training setting: a flag of `train`/`queue add` and, with a `label`, a Launch field."""

    name: str
    kind: type                                  # int, float, str or bool (a bare flag)
    help: str
    seed_flag: bool = False                     # one of the reference's own flags
    default: Any = None                         # None: the level's (or, for a seed command, the reference's)
    minimum: float | None = None                # inclusive
    maximum: float | None = None                # inclusive
    above: float | None = None                  # exclusive lower bound
    below: float | None = None                  # exclusive upper bound
    choices: tuple[Any, ...] | None = None
    arch: bool = False                          # an architecture value: applies where the class takes it
    label: str | None = None                    # the Launch form's label; None: not in the form
    metavar: str | None = None

    def flag(self) -> str:
        return f"--{self.name}"

    def problem(self, value: Any) -> str | None:
        """Why `value` is not valid for this field, or None."""
        if value is None:
            return None
        if self.kind is float and not math.isfinite(value):
            return f"{self.flag()} must be a finite number, got {value}"
        low, high = self.minimum if self.minimum is not None else self.above, \
            self.maximum if self.maximum is not None else self.below
        out_of_range = ((self.minimum is not None and value < self.minimum)
                        or (self.maximum is not None and value > self.maximum)
                        or (self.above is not None and not value > self.above)
                        or (self.below is not None and not value < self.below))
        if out_of_range:
            if low is not None and high is not None:
                return f"{self.flag()} must be between {low:g} and {high:g}, got {value}"
            bound = f">= {self.minimum:g}" if self.minimum is not None else (
                f"> {self.above:g}" if self.above is not None else f"<= {high:g}")
            return f"{self.flag()} must be {bound}, got {value}"
        if self.name == "device" and value not in ("auto", "cpu", "cuda") and not (
                value.startswith("cuda:") and value[5:].isdigit()):
            return f"--device must be {DEVICE_HELP}, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"{self.flag()} must be one of {', '.join(map(str, self.choices))}, got {value!r}"
        return None

    def parse(self, text: str) -> Any:
        """A value typed into the Launch form (raises ValueError)."""
        return self.kind(text) if self.kind is not bool else text.lower() in ("1", "true", "yes")


FIELDS: tuple[Field, ...] = (
    Field("train_data", str, "chunked dataset directory or single .pt file", seed_flag=True),
    Field("val_data", str, "validation data (default: hold out --val_split of the samples of a one-chunk set or "
                           "file, or whole chunks of a larger set)", seed_flag=True),
    Field("val_split", float, "fraction held out without --val_data", seed_flag=True, default=seed.VAL_SPLIT, above=0, below=1),
    Field("output_dir", str, "seed commands: the run goes straight into OUTPUT_DIR/<prefix>_<time>; with --level: "
                             "the runs directory, like --runs", seed_flag=True),
    Field("adapter_level", int, "seed level number: 1=L1 ... 5=L5 (with --vlm_only: B1), 6=L5F; the default (1) when "
                                "no --level is given. Flags left out take the reference's defaults",
          seed_flag=True, choices=seed.NUMBERS, metavar="{1..6}"),
    Field("vlm_only", bool, "train on verifier states (B1 with level 5)", seed_flag=True),
    Field("hidden_dim", int, "must match the data if given (the data decides)", seed_flag=True, minimum=1),
    Field("bottleneck_dim", int, "bottleneck width (L1-L3)", seed_flag=True, minimum=1, arch=True, label="bottleneck dim"),
    Field("num_blocks", int, "stacked blocks (L2, L3)", seed_flag=True, minimum=1, arch=True, label="blocks"),
    Field("num_heads", int, "attention heads (L4, L5, B1, L5F)", seed_flag=True, minimum=1, arch=True, label="heads"),
    Field("num_layers", int, "transformer layers (L4, L5, B1, L5F); L1's stacked blocks", seed_flag=True, minimum=1,
          arch=True, label="layers"),
    Field("ffn_dim", int, "FFN width (L4, L5, B1, L5F)", seed_flag=True, minimum=1, arch=True, label="ffn dim"),
    Field("num_epochs", int, f"epochs (default: the level's; {seed.TRAIN_DEFAULTS['num_epochs']} for seed commands)", seed_flag=True, minimum=1,
          label="epochs"),
    Field("batch_size", int, f"batch size (default: the level's; {seed.TRAIN_DEFAULTS['batch_size']} for seed commands)", seed_flag=True, minimum=1,
          label="batch size"),
    Field("learning_rate", float, f"AdamW learning rate (default: the level's; {seed.TRAIN_DEFAULTS['learning_rate']:g} for seed commands)",
          seed_flag=True, above=0, label="learning rate"),
    Field("early_stopping", int, "patience in epochs, 0 = off (default: the level's; "
          f"{seed.TRAIN_DEFAULTS['early_stopping']} for seed commands)",
          seed_flag=True, minimum=0, label="early stop"),
    Field("level", str, "any level key of adapters.toml (e.g. L4, B1, L4-2L); its defaults apply"),
    Field("dataset", str, "a dataset name of adapters.toml [datasets] (e.g. demo)"),
    Field("seed", int, "random seed", default=0, minimum=0, maximum=MAX_SEED, label="seed"),
    Field("device", str, DEVICE_HELP, default="auto", label="device"),
    Field("lm_head", str, "verifier LM head .pt: a tensor [V, H], or the reference's extract_vl_lm_head.py file; "
                          "enables token metrics"),
    Field("init_from", str, "start from these weights (ours or the reference's checkpoint, or a run directory's "
                            "best_model.pt); a fresh optimizer and schedule", metavar="CKPT|RUN_DIR"),
    Field("config", str, "adapters.toml to read (default: ./adapters.toml)"),
    Field("no_eval", bool, "skip the speculative-decoding eval at the end"),
    Field("precision", str, "auto = bf16 autocast on CUDA, fp32 on CPU", default="auto",
          choices=("auto", "fp32", "bf16"), label="precision"),
    Field("compile", bool, "torch.compile the model (CUDA; slow first epoch)"),
)
FIELD = {f.name: f for f in FIELDS}
TRAIN_FIELDS = ("num_epochs", "batch_size", "learning_rate", "early_stopping")  # defaults from the level
ARCH_FIELDS = tuple(f.name for f in FIELDS if f.arch)


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of every field (`train` and `queue add` share them)."""
    groups = {True: parser.add_argument_group("the seed's flags"), False: parser.add_argument_group("adapter-tui flags")}
    for f in FIELDS:
        group = groups[f.seed_flag]
        if f.kind is bool:
            group.add_argument(f.flag(), action="store_true", help=f.help)
            continue
        default = f" (default {f.default:g})" if isinstance(f.default, float) else (
            f" (default {f.default})" if f.default is not None else "")
        group.add_argument(f.flag(), type=f.kind, default=f.default, metavar=f.metavar, choices=f.choices,
                           help=f.help + default)


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
    sweep: str | None = None        # the sweep this run belongs to (queue add --sweep), not a flag

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainSettings":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def check(settings: TrainSettings) -> TrainSettings:
    """Every field's range check, on settings from flags, a queue job or a run's config.json."""
    values = {**asdict(settings), **settings.arch_overrides}
    for name, value in values.items():
        problem = FIELD[name].problem(value) if name in FIELD else None
        if problem:
            raise UserInputError(problem)
    if settings.layout not in LAYOUTS:
        raise UserInputError(f"layout must be one of {', '.join(LAYOUTS)}, got {settings.layout!r}")
    unknown = [name for name in settings.arch_overrides if name not in ARCH_FIELDS]
    if unknown:
        raise UserInputError(f"{unknown[0]!r} is not an architecture setting ({', '.join(ARCH_FIELDS)})")
    return settings


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
    """Turn parsed train flags into checked settings, applying the level's (or the seed's) defaults."""
    registry = load_registry(args.config)
    if args.level and args.adapter_level is not None:
        raise UserInputError("give either --level or --adapter_level, not both")
    seed_level = None if args.level else (1 if args.adapter_level is None else args.adapter_level)
    spec = seed_spec(seed_level, args.vlm_only) if seed_level is not None else registry.level(args.level)
    train_data, val_data = args.train_data, args.val_data
    if args.dataset:
        if train_data:
            raise UserInputError("give either --dataset or --train_data, not both")
        entry = registry.dataset(args.dataset)
        train_data = str(entry.train)
        val_data = val_data or (str(entry.val) if entry.val else None)
    if not train_data:
        raise UserInputError("no training data: pass --train_data PATH or --dataset NAME (see adapters.toml [datasets])")
    values = {name: getattr(args, name) if getattr(args, name) is not None else spec.train[name] for name in TRAIN_FIELDS}
    overrides = {name: getattr(args, name) for name in ARCH_FIELDS if getattr(args, name, None) is not None}
    output_dir, layout = _output(args, seed_level is not None)
    settings = TrainSettings(
        level=spec.key, train_data=str(Path(train_data)), val_data=str(Path(val_data)) if val_data else None,
        val_split=args.val_split, output_dir=output_dir, seed=args.seed, device=args.device,
        vlm_only=args.vlm_only or spec.vlm_only, arch_overrides=overrides, lm_head=args.lm_head,
        hidden_dim=args.hidden_dim, config_path=str(registry.path), dataset=args.dataset,
        no_eval=getattr(args, "no_eval", False), precision=args.precision, compile=args.compile,
        seed_level=seed_level, layout=layout, init_from=getattr(args, "init_from", None), **values,
    )
    check(settings)
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
    return str(resolve_runs_dir(runs).path), "levels"


def flag_defaults() -> dict[str, Any]:
    """Every field at its flag default, as argparse would parse no flags at all."""
    return {f.name: (False if f.kind is bool else f.default) for f in FIELDS}


def settings_file(path: Path) -> TrainSettings:
    """Checked settings from a file (a queue job's, as the worker writes it)."""
    from common.fileio import ReadError, read_json

    try:
        data = read_json(path)
        settings = TrainSettings.from_dict(data)
    except (ReadError, TypeError, AttributeError) as exc:
        raise UserInputError(f"--settings {path}: not a settings file ({exc})") from None
    check(settings)
    effective_spec(load_registry(settings.config_path), settings)
    return settings
