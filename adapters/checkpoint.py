"""Checkpoints that rebuild any level from the file alone, and the one safe way to load a .pt."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from adapters.errors import CheckpointError
from adapters.zoo import adapter_class
from engine.fileio import atomic_writer

FORMAT = "adapter-tui-checkpoint"


def safe_load(path: str | os.PathLike, *, mmap: bool = False, map_location: Any = "cpu") -> Any:
    """torch.load with weights_only=True: plain tensors and containers only, never code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} not found; check the path")
    try:
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


def _looks_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive (or, in old versions, a pickle starting with 0x80)."""
    with open(path, "rb") as handle:
        return zipfile.is_zipfile(handle) or handle.read(1) == b"\x80"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save into a temp file beside `path`, then os.replace."""
    with atomic_writer(path) as handle:
        torch.save(obj, handle)


def adapter_payload(model: torch.nn.Module, **extra: Any) -> dict[str, Any]:
    """Everything needed to rebuild `model` (built by adapters.registry.build_adapter)."""
    return {
        "format": FORMAT,
        "version": 1,
        "level": getattr(model, "level_key", type(model).__name__),
        "class": type(model).__name__,
        "init_kwargs": dict(model.init_kwargs),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }


def save_adapter(model: torch.nn.Module, path: str | os.PathLike, **extra: Any) -> None:
    atomic_torch_save(adapter_payload(model, **extra), path)


def load_adapter(path: str | os.PathLike, map_location: Any = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the adapter stored at `path`. Returns (model in eval mode, the whole payload)."""
    payload = safe_load(path, map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an adapter-tui checkpoint (no '{FORMAT}' format tag)")
    try:
        cls = adapter_class(payload["class"])
    except KeyError as exc:
        raise CheckpointError(f"{path}: {exc.args[0]}") from None
    kwargs = dict(payload["init_kwargs"])
    hidden_dim = kwargs.pop("hidden_dim")
    model = cls(hidden_dim, **kwargs)
    model.load_state_dict(payload["state_dict"])
    model.level_key = payload["level"]
    model.init_kwargs = {"hidden_dim": hidden_dim, **kwargs}
    return model.eval(), payload
