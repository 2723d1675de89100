"""Turn "these levels (or this preset, or a seed command) on this data, with these settings"
into queue jobs: one validated TrainSettings per level, each with that level's defaults unless
a field overrides it. `queue add` and the app both plan through `plan_jobs`. Torch-free: the
deep data check (every chunk, the LM head) is `queue add`'s, on top."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from adapters.registry import load_registry
from common.errors import UserInputError
from engine.queue.storage import Job
from engine.settings import FIELD, TrainSettings, check, effective_spec, flag_defaults, resolve


@dataclass
class Plan:
    settings: list[TrainSettings]
    dataset: str | None          # the [datasets] name, else the training data path
    config: str                  # the adapters.toml the jobs were planned with (absolute)

    @property
    def jobs(self) -> list[tuple[str, dict[str, Any]]]:
        """(level, settings) as the queue stores them."""
        return [(s.level, s.as_dict()) for s in self.settings]

    @property
    def data_paths(self) -> list[str]:
        paths: list[str] = []
        for s in self.settings:
            for path in (s.train_data, s.val_data):
                if path and path not in paths:
                    paths.append(path)
        return paths


def check_path(path: str, flag: str, *, dataset: bool = True) -> str:
    """Cheap, torch-free: the path exists (and looks like a dataset). Returns it absolute: the
    worker may run from another directory."""
    p = Path(path).expanduser()
    if not p.exists():
        hint = "; check the path or run `adapter-engine synth DIR`" if dataset else ""
        raise UserInputError(f"{flag} {path} does not exist{hint}")
    if dataset and p.is_dir() and not (p / "index.json").is_file():
        raise UserInputError(f"{flag} {path} is a directory without index.json; point at a chunked dataset "
                             "directory or a .pt file")
    return str(p.resolve())


def _absolute(settings: TrainSettings) -> TrainSettings:
    return replace(
        settings,
        train_data=check_path(settings.train_data, "--train_data"),
        val_data=check_path(settings.val_data, "--val_data") if settings.val_data else None,
        lm_head=check_path(settings.lm_head, "--lm_head", dataset=False) if settings.lm_head else None,
        init_from=check_path(settings.init_from, "--init_from", dataset=False) if settings.init_from else None,
    )


def plan_jobs(levels: list[str] | None = None, *, preset: str | None = None, config: str | None = None,
              **fields: Any) -> Plan:
    """One job per level (the preset's levels first, then `levels`, in order), or one seed
    command (`adapter_level`). `fields` are training fields (train_data, dataset, num_epochs,
    ...); None means the level's default."""
    unknown = [name for name in fields if name not in FIELD or name in ("level", "config", "output_dir")]
    if unknown:
        raise UserInputError(f"unknown training setting {unknown[0]!r}")
    registry = load_registry(config)
    keys: list[str | None] = (registry.preset(preset) if preset else []) + list(levels or [])
    if fields.get("adapter_level") is not None:
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
    planned = []
    for key in keys:
        namespace = SimpleNamespace(**{**flag_defaults(), **{k: v for k, v in fields.items() if v is not None},
                                       "level": key, "config": config_path})
        planned.append(_absolute(resolve(namespace)[0]))
    dataset = fields.get("dataset") or planned[0].train_data
    return Plan(settings=planned, dataset=dataset, config=config_path)


def settings_of(job: Job) -> TrainSettings:
    """A job's settings, checked again (the file may have been planned by an older version).
    Jobs queued before jobs stored settings hold train flags: they are planned now."""
    stored = job.settings
    if "level" in stored and "train_data" in stored:
        settings = check(TrainSettings.from_dict(stored))
        effective_spec(load_registry(settings.config_path), settings)
        return settings
    flags = {k: v for k, v in stored.items() if k in FIELD and k not in ("level", "config", "output_dir")}
    seed_command = flags.get("adapter_level") is not None
    return plan_jobs([] if seed_command else [job.level], config=job.config, **flags).settings[0]
