"""Checkpoints that rebuild any level from the file alone, and the one safe way to load a .pt.

Ours carry a format tag, the level, the class and its constructor arguments. The reference
implementation's checkpoints load too (`adapters.reference` maps their parameter names)."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from adapters import reference, seed
from common.errors import CheckpointError
from adapters.zoo import adapter_class
from common.fileio import atomic_writer

FORMAT = "adapter-tui-checkpoint"
VERSION = 2  # 2: L1 names its block count num_layers, as the reference does (version 1: num_blocks)


def safe_load(path: str | os.PathLike, *, mmap: bool = False, map_location: Any = "cpu") -> Any:
    """torch.load with weights_only=True: plain tensors and containers only, never code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} not found; check the path")
    try:
        with _reference_globals():
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        if not _looks_like_torch_file(path):
            raise CheckpointError(f"{path} is not a torch-saved file; check the path") from None
        raise CheckpointError(
            f"{path} holds pickled Python objects, not plain tensors; refusing to load it "
            "(re-save it with tensors, dicts and lists only)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointError(f"{path} is not a readable torch file ({reason})") from None


def _reference_globals():
    """Allow the reference's L1 config class by name (torch >= 2.5 can; older torch refuses it)."""
    allow = getattr(torch.serialization, "safe_globals", None)
    return allow(reference.SAFE_GLOBALS) if allow is not None else nullcontext()


def _looks_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive (or, in old versions, a pickle starting with 0x80)."""
    with open(path, "rb") as handle:
        return zipfile.is_zipfile(handle) or handle.read(1) == b"\x80"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save into a temp file beside `path`, then os.replace."""
    with atomic_writer(path) as handle:
        torch.save(obj, handle)


def widths(payload: dict[str, Any]) -> tuple[int, int]:
    """(drafter width Hd, verifier width Hv) of a checkpoint payload (ours or a converted
    reference one): init_kwargs carries drafter_dim only where it differs from hidden_dim."""
    kwargs = payload["init_kwargs"]
    return int(kwargs.get("drafter_dim", kwargs["hidden_dim"])), int(kwargs["hidden_dim"])


def adapter_payload(model: torch.nn.Module, **extra: Any) -> dict[str, Any]:
    """Everything needed to rebuild `model` (built by adapters.registry.build_adapter). Both widths
    are also recorded at the top (`drafter_dim`, `hidden_dim`) for readers that do not rebuild."""
    init_kwargs = dict(model.init_kwargs)
    return {
        "format": FORMAT,
        "version": VERSION,
        "level": getattr(model, "level_key", type(model).__name__),
        "class": type(model).__name__,
        "init_kwargs": init_kwargs,
        "hidden_dim": init_kwargs["hidden_dim"],
        "drafter_dim": init_kwargs.get("drafter_dim", init_kwargs["hidden_dim"]),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }


def save_adapter(model: torch.nn.Module, path: str | os.PathLike, **extra: Any) -> None:
    atomic_torch_save(adapter_payload(model, **extra), path)


def load_adapter(path: str | os.PathLike, map_location: Any = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the adapter stored at `path` (ours, or the reference's). Returns (model in eval
    mode, the payload in our layout: format, level, class, init_kwargs, state_dict, epoch ...)."""
    payload = safe_load(path, map_location=map_location)
    if reference.is_reference_checkpoint(payload):
        payload = _from_reference(Path(path), payload)
    elif not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an adapter-tui checkpoint (no '{FORMAT}' format tag) "
                              "nor one of the reference's (no model_state_dict)")
    try:
        cls = adapter_class(payload["class"])
        kwargs = dict(payload["init_kwargs"])
        if payload.get("version", 1) < 2 and payload["class"] == "BottleneckAdapter" and "num_blocks" in kwargs:
            kwargs["num_layers"] = kwargs.pop("num_blocks")
        hidden_dim = kwargs.pop("hidden_dim")
        model = cls(hidden_dim, **kwargs)
        model.load_state_dict(payload["state_dict"])
    except KeyError as exc:
        raise CheckpointError(f"{path}: missing {exc.args[0]!r}; not a complete adapter checkpoint") from None
    except (TypeError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} does not rebuild its adapter ({reason})") from None
    model.level_key = payload["level"]
    model.init_kwargs = {"hidden_dim": hidden_dim, **kwargs}
    return model.eval(), payload


def _from_reference(path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """A reference checkpoint in our payload layout. Whether an EAGLE level was B1 is only in
    the run's config.json beside it (`vlm_only`), as the reference's own eval needs a flag for it."""
    config = _read_config(path.parent / "config.json")
    vlm_only = config.get("vlm_only") is True or str(config.get("task", "")).startswith("train_B1_")
    converted = reference.convert(payload, vlm_only=vlm_only)
    level = seed.by_class(converted.class_name)
    key = seed.VLM_ONLY_PREFIX if converted.init_kwargs.get("vlm_only") and level.number == 5 else level.key
    return {"format": "reference", "level": key, "class": converted.class_name,
            "init_kwargs": converted.init_kwargs, "state_dict": converted.state_dict,
            "epoch": converted.epoch, "metrics": converted.metrics}


def _read_config(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle) if path.is_file() else {}
    except (OSError, ValueError, RecursionError):
        return {}
    return config if isinstance(config, dict) else {}
