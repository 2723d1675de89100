"""Turn "these levels (or this preset) on this data, with these overrides" into queue jobs:
one (level, args) pair per level, each with that level's training defaults from adapters.toml
unless overridden. Torch-free: validates names, numbers and paths the way `adapter-engine
train` would (engine.settings.resolve); the CLI adds the deep data check on top."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from common.errors import UserInputError
from adapters.registry import load_registry
from engine.settings import TRAIN_FLAGS, TrainSettings, resolve

def _train_flag_defaults() -> dict[str, Any]:
    """The flags of `adapter-engine train` with their defaults, read from its own parser so the
    queue can never drift from the trainer."""
    import argparse

    from engine.commands.train import add_train_flags

    parser = argparse.ArgumentParser(add_help=False)
    add_train_flags(parser)
    return vars(parser.parse_args([]))


TRAIN_FLAG_DEFAULTS: dict[str, Any] = _train_flag_defaults()


@dataclass
class Plan:
    jobs: list[tuple[str, dict[str, Any]]]
    dataset: str | None          # the [datasets] name, else the training data path
    config: str                  # the adapters.toml the jobs were planned with (absolute)
    settings: list[TrainSettings] = field(default_factory=list)

    @property
    def data_paths(self) -> list[str]:
        paths = []
        for _, args in self.jobs:
            for key in ("train_data", "val_data"):
                if args.get(key) and args[key] not in paths:
                    paths.append(args[key])
        return paths


def check_data_path(path: str, flag: str) -> str:
    """Cheap, torch-free: the path exists and looks like a dataset. Returns it absolute."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserInputError(f"{flag} {path} does not exist; check the path or run `adapter-engine synth DIR`")
    if p.is_dir() and not (p / "index.json").is_file():
        raise UserInputError(f"{flag} {path} is a directory without index.json; point at a chunked dataset "
                             "directory or a .pt file")
    return str(p.resolve())


def job_args(settings: TrainSettings) -> dict[str, Any]:
    """The train flags of one resolved job (None values left out)."""
    args: dict[str, Any] = {
        "train_data": check_data_path(settings.train_data, "--train_data"),
        "val_data": check_data_path(settings.val_data, "--val_data") if settings.val_data else None,
        "val_split": settings.val_split if not settings.val_data else None,
        **{name: getattr(settings, name) for name in TRAIN_FLAGS},
        "seed": settings.seed,
        "device": settings.device,
        "vlm_only": True if settings.vlm_only else None,
        "hidden_dim": settings.hidden_dim,
        "no_eval": True if settings.no_eval else None,
        "precision": settings.precision if settings.precision != "auto" else None,
        "compile": True if settings.compile else None,
        "adapter_level": settings.seed_level,  # a seed command: the reference's level, not adapters.toml's
        **settings.arch_overrides,
    }
    if settings.lm_head:
        lm_head = Path(settings.lm_head).expanduser()
        if not lm_head.is_file():
            raise UserInputError(f"--lm_head {settings.lm_head} does not exist")
        args["lm_head"] = str(lm_head.resolve())
    return {k: v for k, v in args.items() if v is not None}


def plan_jobs(levels: list[str] | None = None, *, preset: str | None = None, config: str | None = None,
              **flags: Any) -> Plan:
    """One job per level (the preset's levels first, then `levels`, in order). `flags` are
    train flags (train_data, val_data, dataset, num_epochs, ...); None means the default."""
    unknown = [name for name in flags if name not in TRAIN_FLAG_DEFAULTS or name in ("level", "config", "output_dir")]
    if unknown:
        raise UserInputError(f"unknown train flag {unknown[0]!r}")
    registry = load_registry(config)
    keys: list[str | None] = (registry.preset(preset) if preset else []) + list(levels or [])
    if flags.get("adapter_level") is not None:
        if keys:
            raise UserInputError("give either --level/--preset or --adapter_level, not both")
        keys = [None]  # one seed command
    if not keys:
        raise UserInputError("no level to queue: pass --level KEY (repeatable), --preset NAME "
                             f"(presets: {', '.join(registry.presets) or 'none'}) or --adapter_level N")
    for key in keys:
        if key is not None:
            registry.level(key)
    config_path = str(Path(registry.path).resolve())
    jobs, all_settings = [], []
    for key in keys:
        namespace = SimpleNamespace(**{**TRAIN_FLAG_DEFAULTS, **{k: v for k, v in flags.items() if v is not None},
                                       "level": key, "config": config_path})
        settings, _ = resolve(namespace)
        jobs.append((settings.level, job_args(settings)))
        all_settings.append(settings)
    dataset = flags.get("dataset") or (jobs[0][1]["train_data"] if jobs else None)
    return Plan(jobs=jobs, dataset=dataset, config=config_path, settings=all_settings)
