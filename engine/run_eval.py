"""Evaluate a run directory or checkpoint on its validation data (used by `eval` and the trainer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapters.checkpoint import load_adapter
from common.errors import UserInputError
from common.errors import DataError
from engine.data.dataset import open_dataset, split_train_val
from engine.device import pick_device
from engine.evaluate import evaluate, load_lm_head
from common.fileio import ReadError, read_json
from engine.rundir import BEST, CONFIG, FINAL, LAST
from engine.settings import TrainSettings


def checkpoint_of(target: Path) -> Path:
    if target.is_file():
        return target
    if target.is_dir():
        for name in (BEST, FINAL, LAST):
            if (target / name).is_file():
                return target / name
        raise UserInputError(f"{target} holds no checkpoint ({BEST}, {FINAL} or {LAST}); train it first")
    raise UserInputError(f"{target} does not exist; pass a run directory or a checkpoint file")


def run_settings(target: Path) -> TrainSettings | None:
    run_dir = target if target.is_dir() else target.parent
    try:
        return TrainSettings.from_dict(read_json(run_dir / CONFIG)["settings"])
    except (ReadError, KeyError, TypeError):
        return None


def evaluate_target(target: Path, *, data: str | None, lm_head: str | None, thresholds: list[float],
                    gamma: int, draft_cost: float, device: str = "auto",
                    timing: dict[str, float] | None = None) -> dict[str, Any]:
    device = pick_device(device)  # an unknown or absent device fails before anything is read
    checkpoint = checkpoint_of(target)
    model, payload = load_adapter(checkpoint)
    settings = run_settings(target)
    if data:
        dataset = open_dataset(data)
    elif settings is not None and settings.val_data:
        dataset = open_dataset(settings.val_data)
    elif settings is not None:
        _, dataset, _ = split_train_val(open_dataset(settings.train_data), settings.val_split, settings.seed)
    else:
        raise UserInputError(f"{target}: no run config to find validation data in; pass --data VAL")
    hidden = payload["init_kwargs"]["hidden_dim"]
    if dataset.hidden_dim != hidden:
        raise DataError(f"{dataset.path} has hidden size {dataset.hidden_dim} but the checkpoint expects {hidden}")
    head_path = lm_head or (settings.lm_head if settings else None)
    head = load_lm_head(head_path, hidden) if head_path else None
    result = evaluate(model, dataset, thresholds=thresholds, gamma=gamma, draft_cost=draft_cost,
                      lm_head=head, device=device, timing=timing)
    return {"checkpoint": str(checkpoint), "level": payload.get("level"), "epoch": payload.get("epoch"),
            "data": str(dataset.path), **result}
