"""adapters.toml: the registry of levels, presets and named datasets. Torch-free to read.

A level is one table under [levels]; its keys are the class, a display name and description,
architecture defaults, training defaults and flags. Any error names the table and the key.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from adapters import seed
from common.errors import ConfigError
from common.fileio import atomic_writer
from common.names import is_safe_name
from common.project import PROJECT_FILE, find_project
from adapters.zoo import CLASSES, adapter_class

MAX_HIDDEN_DIM = 1 << 20  # beyond any model's hidden size; larger ones overflow even a meta-device count
CONFIG_ENV = "ADAPTER_TUI_CONFIG"

ARCH_KEYS: dict[str, type] = {
    "bottleneck_dim": int, "num_blocks": int, "num_heads": int, "num_layers": int,
    "ffn_dim": int, "dropout": float, "alpha": float, "max_seq_len": int,
}
TRAIN_KEYS: dict[str, type] = {
    "num_epochs": int, "batch_size": int, "learning_rate": float, "early_stopping": int,
}
FLAG_KEYS: dict[str, type] = {"vlm_only": bool, "fused": bool}
TEXT_KEYS: dict[str, type] = {"class": str, "name": str, "description": str}
EVAL_KEYS: dict[str, type] = {"thresholds": list, "gamma": int, "draft_cost": float}
EVAL_DEFAULTS: dict[str, Any] = {"thresholds": [0.8, 0.85, 0.9, 0.95], "gamma": 5, "draft_cost": 0.1}


@dataclass(frozen=True)
class LevelSpec:
    key: str
    class_name: str
    name: str
    description: str
    arch: dict[str, Any]
    train: dict[str, Any]
    vlm_only: bool = False
    fused: bool = False

    @property
    def consumes(self) -> str:
        if self.fused:
            return "both"
        return "verifier" if self.vlm_only else "drafter"


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    train: Path
    val: Path | None


@dataclass
class Registry:
    path: Path
    levels: dict[str, LevelSpec]
    presets: dict[str, list[str]] = field(default_factory=dict)
    datasets: dict[str, DatasetEntry] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=lambda: dict(EVAL_DEFAULTS))
    slurm: dict[str, Any] = field(default_factory=dict)  # `queue worker --backend slurm` defaults (engine checks them)

    def level(self, key: str) -> LevelSpec:
        if key not in self.levels:
            raise ConfigError(f"unknown level {key!r}; levels in {self.path}: {', '.join(self.levels)}")
        return self.levels[key]

    def preset(self, name: str) -> list[str]:
        if name not in self.presets:
            raise ConfigError(f"unknown preset {name!r}; presets in {self.path}: {', '.join(self.presets) or 'none'}")
        return list(self.presets[name])

    def dataset(self, name: str) -> DatasetEntry:
        if name not in self.datasets:
            raise ConfigError(f"unknown dataset {name!r}; datasets in {self.path}: {', '.join(self.datasets) or 'none'}")
        return self.datasets[name]


def default_config_path() -> Path:
    """$ADAPTER_TUI_CONFIG, else the project's adapters.toml (the nearest one from the working
    directory up), else the one shipped beside the packages."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    project = find_project()
    if project is not None:
        return project / PROJECT_FILE
    return Path(__file__).resolve().parent.parent / PROJECT_FILE


def _typed(table: str, key: str, value: Any, kind: type) -> Any:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(f"[{table}] {key} must be {kind.__name__}, got {type(value).__name__} {value!r}")
    if kind is int and value < 1:
        raise ConfigError(f"[{table}] {key} must be >= 1, got {value}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"[{table}] {key} must be a finite number, got {value}")
    if kind is float and key == "learning_rate" and not value > 0:
        raise ConfigError(f"[{table}] {key} must be > 0, got {value}")
    if key == "dropout" and not 0.0 <= value < 1.0:
        raise ConfigError(f"[{table}] dropout must be in [0, 1), got {value}")
    return value


def _parse_level(key: str, raw: Any) -> LevelSpec:
    table = f"levels.{key}"
    if not is_safe_name(key):
        raise ConfigError(f"[{table}] level key {key!r} is not a safe name (letters, digits, '_' and '-', at most 64)")
    if not isinstance(raw, dict):
        raise ConfigError(f"[{table}] must be a table")
    known = {**TEXT_KEYS, **ARCH_KEYS, **TRAIN_KEYS, **FLAG_KEYS}
    for name in raw:
        if name not in known:
            raise ConfigError(f"[{table}] unknown key {name!r} (known: {', '.join(known)})")
    values = {name: _typed(table, name, value, known[name]) for name, value in raw.items()}
    if "class" not in values:
        raise ConfigError(f"[{table}] class is missing (one of: {', '.join(CLASSES)})")
    class_name = values["class"]
    if class_name not in CLASSES:
        raise ConfigError(f"[{table}] class {class_name!r} is unknown (known: {', '.join(CLASSES)})")
    fused = values.get("fused", class_name == "FusedEAGLEAdapter")
    if fused != (class_name == "FusedEAGLEAdapter"):
        raise ConfigError(f"[{table}] fused = {str(fused).lower()} does not match class {class_name}")
    if fused and values.get("vlm_only", False):
        raise ConfigError(f"[{table}] vlm_only cannot be combined with a fused class")
    return LevelSpec(
        key=key,
        class_name=class_name,
        name=values.get("name", key),
        description=values.get("description", ""),
        arch={k: v for k, v in values.items() if k in ARCH_KEYS},
        train={**seed.TRAIN_DEFAULTS, **{k: v for k, v in values.items() if k in TRAIN_KEYS}},
        vlm_only=values.get("vlm_only", False),
        fused=fused,
    )


def eval_problem(thresholds: Any, gamma: Any, draft_cost: Any, prefix: str = "") -> str | None:
    """What is wrong with evaluation settings, from [eval] or from `eval`'s flags (prefix "--") alike."""
    numbers = isinstance(thresholds, list) and all(
        isinstance(t, (int, float)) and not isinstance(t, bool) for t in thresholds)
    if not thresholds or not numbers or not all(-1 < t < 1 for t in thresholds):
        return f"{prefix}thresholds must be a non-empty list of numbers between -1 and 1"
    if isinstance(gamma, bool) or not isinstance(gamma, int) or gamma < 1:
        return f"{prefix}gamma must be an integer >= 1, got {gamma!r}"
    if isinstance(draft_cost, bool) or not isinstance(draft_cost, (int, float)) or not 0 <= draft_cost < math.inf:
        return f"{prefix}draft_cost must be a finite number >= 0, got {draft_cost!r}"
    return None


def _parse_eval(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError("[eval] must be a table")
    result = dict(EVAL_DEFAULTS)
    for key, value in raw.items():
        if key not in EVAL_KEYS:
            raise ConfigError(f"[eval] unknown key {key!r} (known: {', '.join(EVAL_KEYS)})")
        result[key] = value
    problem = eval_problem(result["thresholds"], result["gamma"], result["draft_cost"])
    if problem:
        raise ConfigError(f"[eval] {problem}")
    result["thresholds"] = [float(t) for t in result["thresholds"]]
    result["draft_cost"] = float(result["draft_cost"])
    return result


def load_registry(path: str | os.PathLike | None = None) -> Registry:
    """Read and validate adapters.toml. Raises ConfigError naming the table and key."""
    path = Path(path) if path is not None else default_config_path()
    if path.exists() and not path.is_file():
        raise ConfigError(f"config {path} is not a regular file; pass --config PATH")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config {path} not found; pass --config PATH or run from the repository root") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None

    for section in doc:
        if section not in ("levels", "presets", "datasets", "eval", "slurm"):
            raise ConfigError(f"[{section}] is not a known table (known: levels, presets, datasets, eval, slurm)")
    raw_levels = doc.get("levels", {})
    if not isinstance(raw_levels, dict) or not raw_levels:
        raise ConfigError(f"[levels] in {path} must hold at least one level table")
    levels = {key: _parse_level(key, raw) for key, raw in raw_levels.items()}

    for section in ("presets", "datasets", "eval", "slurm"):
        if not isinstance(doc.get(section, {}), dict):
            raise ConfigError(f"[{section}] in {path} must be a table, got {type(doc[section]).__name__}")
    presets: dict[str, list[str]] = {}
    for name, keys in doc.get("presets", {}).items():
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ConfigError(f"[presets] {name} must be a list of level keys")
        for k in keys:
            if k not in levels:
                raise ConfigError(f"[presets] {name} names unknown level {k!r} (levels: {', '.join(levels)})")
        presets[name] = keys

    datasets: dict[str, DatasetEntry] = {}
    for name, entry in doc.get("datasets", {}).items():
        table = f"datasets.{name}"
        if not is_safe_name(name):
            raise ConfigError(f"[{table}] dataset name {name!r} is not a safe name")
        if not isinstance(entry, dict) or not isinstance(entry.get("train"), str):
            raise ConfigError(f"[{table}] train must be a path string")
        val = entry.get("val")
        if val is not None and not isinstance(val, str):
            raise ConfigError(f"[{table}] val must be a path string")
        base = path.resolve().parent
        datasets[name] = DatasetEntry(name, base / entry["train"], base / val if val else None)

    return Registry(path=path, levels=levels, presets=presets, datasets=datasets,
                    eval=_parse_eval(doc.get("eval", {})), slurm=dict(doc.get("slurm", {})))


def register_problem(path: str | os.PathLike | None, name: str) -> str | None:
    """Why `register_dataset(path, name, ...)` would fail now, or None."""
    if not is_safe_name(name):
        return f"dataset name {name!r} is not a safe name (letters, digits, '_' and '-')"
    try:
        registry = load_registry(path)
    except ConfigError as exc:
        return str(exc)
    if name in registry.datasets:
        return f"[datasets.{name}] is already in {registry.path}; pick another name"
    if not os.access(registry.path, os.W_OK) or not os.access(registry.path.parent, os.W_OK):
        return f"{registry.path} is not writable"
    return None


def register_dataset(path: str | os.PathLike | None, name: str, train: Path, val: Path | None = None) -> Path:
    """Append [datasets.NAME] to adapters.toml (atomically, the rest of the file as it was).
    Paths under the file's directory are written relative to it, as the shipped entries are."""
    problem = register_problem(path, name)
    if problem:
        raise ConfigError(problem)
    config = Path(path) if path is not None else default_config_path()
    base = config.resolve().parent

    def shown(p: Path) -> str:
        p = Path(p).resolve()
        return str(p.relative_to(base)) if p.is_relative_to(base) else str(p)

    lines = [f"[datasets.{name}]", f"train = {_toml_string(shown(train))}"]
    if val is not None:
        lines.append(f"val = {_toml_string(shown(val))}")
    text = config.read_text(encoding="utf-8")
    text = text + ("" if text.endswith("\n") or not text else "\n") + "\n" + "\n".join(lines) + "\n"
    tomllib.loads(text)  # what is written parses, whatever the paths hold
    with atomic_writer(config) as handle:
        handle.write(text.encode("utf-8"))
    return config


def _toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's for these characters)."""
    return json.dumps(value, ensure_ascii=False)


def accepted_arch_keys(class_name: str) -> set[str]:
    """The architecture keys the class's constructor takes (L1: num_layers, L2/L3: num_blocks ...)."""
    params = inspect.signature(adapter_class(class_name).__init__).parameters
    return {name for name in params if name in ARCH_KEYS}


def build_kwargs(spec: LevelSpec, overrides: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Constructor arguments for `spec`'s class: its arch defaults plus the overrides the class
    accepts. Returns (kwargs, names of overrides the class does not take)."""
    accepted = accepted_arch_keys(spec.class_name)
    for key in spec.arch:
        if key not in accepted:
            raise ConfigError(f"[levels.{spec.key}] {key} is not a setting of {spec.class_name} "
                              f"(it takes: {', '.join(sorted(accepted))})")
    kwargs = dict(spec.arch)
    ignored = []
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key in accepted:
            kwargs[key] = value
        else:
            ignored.append(key)
    kwargs["vlm_only"] = spec.vlm_only
    return kwargs, ignored


def build_adapter(spec: LevelSpec, hidden_dim: int, overrides: dict[str, Any] | None = None, device: Any = None,
                  drafter_dim: int | None = None):
    """Instantiate a level mapping drafter width `drafter_dim` (default `hidden_dim`) to verifier
    width `hidden_dim` (device "meta" counts parameters without memory)."""
    import torch

    kwargs, _ = build_kwargs(spec, overrides)
    if drafter_dim is not None and drafter_dim != hidden_dim:
        kwargs["drafter_dim"] = drafter_dim  # only when they differ: equal widths keep the reference's arguments
    heads = kwargs.get("num_heads")
    if heads is not None and hidden_dim % heads:
        raise ConfigError(f"[levels.{spec.key}] num_heads = {heads} does not divide hidden size {hidden_dim}")
    with torch.device(device) if device is not None else nullcontext():
        model = adapter_class(spec.class_name)(hidden_dim, **kwargs)
    model.level_key = spec.key
    model.init_kwargs = {"hidden_dim": hidden_dim, **kwargs}
    return model


def count_parameters(spec: LevelSpec, hidden_dim: int, overrides: dict[str, Any] | None = None,
                     drafter_dim: int | None = None) -> int:
    """Parameter count on the meta device: instant, no memory allocated."""
    model = build_adapter(spec, hidden_dim, overrides, device="meta", drafter_dim=drafter_dim)
    return sum(p.numel() for p in model.parameters())
