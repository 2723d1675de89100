"""What a run needs before its run directory exists: its data, level, device, sizes and
starting weights, all checked (UserInputError) before anything is written. Fresh runs, resumes
(last.pt) and fine-tunings (--init_from) take the same path."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adapters.checkpoint import load_adapter, safe_load
from adapters.checkpoint import widths as checkpoint_widths
from adapters.registry import build_adapter, count_parameters, load_registry
from common.errors import DataError, UserInputError
from common.fileio import ReadError, read_json, unwritable_dir
from common.text import widths_text
from engine.data.dataset import open_dataset, split_train_val
from engine.data.formats import Dataset
from engine.device import pick_device
from engine.evaluate import load_lm_head
from engine.rundir.layout import CONFIG, HISTORY, LAST, LOG, STATUS, checkpoint_of
from engine.settings import TrainSettings, check, effective_spec, ignored_arch_flags, ignored_warning


@dataclass
class Inputs:
    """Everything validated before a run directory exists."""

    settings: TrainSettings
    spec: Any
    train: Dataset
    val: Dataset
    split_note: str | None
    device: torch.device
    lm_head: torch.Tensor | None
    params: int
    warnings: list[str]
    initial_state: dict[str, torch.Tensor] | None = None  # --init_from's weights
    resume_state: dict[str, Any] | None = None            # last.pt of the run to continue


def prepare(settings: TrainSettings, resume_state: dict[str, Any] | None = None) -> Inputs:
    """Validate data, level, device, sizes and where the run goes. Raises UserInputError;
    writes nothing."""
    registry = load_registry(settings.config_path)
    spec = effective_spec(registry, settings)
    train = open_dataset(settings.train_data)
    if settings.val_data:
        val, note = open_dataset(settings.val_data), None
        if val.widths != train.widths:
            raise DataError(f"train hidden size {widths_text(*train.widths)} and val hidden size "
                            f"{widths_text(*val.widths)} differ; use a validation set extracted from the same models")
    else:
        train, val, note = split_train_val(train, settings.val_split, settings.seed)
    drafter, hidden = train.widths
    if settings.hidden_dim is not None and settings.hidden_dim != hidden:
        raise UserInputError(f"--hidden_dim {settings.hidden_dim} conflicts with the data's hidden size {hidden} "
                             "(the verifier's); drop the flag (the hidden size comes from the data)")
    lm_head = load_lm_head(settings.lm_head, hidden) if settings.lm_head else None
    params = count_parameters(spec, hidden, settings.arch_overrides, drafter_dim=drafter)  # also checks heads | hidden
    device = pick_device(settings.device)
    check_memory(spec.key, params, widths_text(drafter, hidden), device)
    if resume_state is None:
        problem = unwritable_dir(settings.output_dir)
        if problem:
            raise UserInputError(f"cannot create the run directory: {problem}")
    ignored = ignored_arch_flags(spec, settings.arch_overrides)
    warnings = [ignored_warning(spec, ignored)] if ignored else []
    initial = initial_weights(settings.init_from, spec, train.widths, settings.arch_overrides) if settings.init_from else None
    if resume_state is not None:
        _fits(resume_state["state_dict"], spec, train.widths, settings.arch_overrides, "last.pt")
    return Inputs(settings, spec, train, val, note, device, lm_head, params, warnings, initial, resume_state)


# Bytes a parameter takes while training: fp32 weight and gradient, and AdamW's two moments.
TRAINING_BYTES_PER_PARAM = 16


def device_memory(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(level: str, params: int, hidden: int | str, device: torch.device) -> None:
    """Refuse a model whose parameters alone (with gradients and optimizer state) cannot fit the
    device, before anything is allocated or written."""
    need, have = params * TRAINING_BYTES_PER_PARAM, device_memory(device)
    if have is not None and need > have:
        raise UserInputError(f"{level} at hidden size {hidden} has {params:,} parameters, which need "
                             f"{need / 2**30:,.1f} GiB to train (weights, gradients, AdamW state) but {device} has "
                             f"{have / 2**30:,.1f} GiB; use a smaller level or hidden size")


def read_resume(run_dir: Path) -> tuple[TrainSettings, dict[str, Any]]:
    """The settings and last.pt of a run to continue, everything checked before the run
    directory is touched: a refused resume leaves it exactly as it was."""
    where = f"--resume {run_dir}"
    if not run_dir.is_dir():
        raise UserInputError(f"{where}: not a run directory")
    odd = [name for name in (CONFIG, HISTORY, STATUS, LOG, LAST) if (run_dir / name).exists()
           and not (run_dir / name).is_file()]
    if odd:
        raise UserInputError(f"{where}: {odd[0]} is not a regular file; this is not a run to resume")
    try:
        settings = TrainSettings.from_dict(read_json(run_dir / CONFIG)["settings"])
    except (ReadError, KeyError, TypeError, AttributeError) as exc:
        raise UserInputError(f"{where}: not a resumable run directory ({exc})") from None
    try:
        check(settings)
    except UserInputError as exc:
        raise UserInputError(f"{where}: its config.json holds a bad setting: {exc}") from None
    try:
        status = read_json(run_dir / STATUS, missing_ok=True)
    except ReadError:
        status = None
    if isinstance(status, dict) and status.get("state") == "done":
        raise UserInputError(f"{where}: the run is done; start a new run (--init_from {run_dir} starts from its weights)")
    if not (run_dir / LAST).is_file():
        raise UserInputError(f"{where}: no last.pt (no epoch finished), nothing to resume; start a new run")
    try:
        state = safe_load(run_dir / LAST)
    except UserInputError as exc:
        raise UserInputError(f"{where}: {exc}") from None
    expected = {"state_dict": dict, "optimizer": dict, "scheduler": dict, "rng_cpu": torch.Tensor, "history": dict,
                "epoch": int, "best_val_loss": float, "bad_epochs": int}
    wrong = [k for k, kind in expected.items() if not isinstance(state, dict) or not isinstance(state.get(k), kind)]
    if wrong:
        raise UserInputError(f"{where}: last.pt is not a complete training state ({wrong[0]!r} is missing or wrong); "
                             "start a new run")
    return settings, state


def _fits(state: dict[str, torch.Tensor], spec, widths: tuple[int, int], overrides: dict[str, Any], what: str) -> None:
    """`state` (a state_dict) has exactly the parameters, and their shapes, of the model built
    for the data's widths (Hd, Hv)."""
    model = build_adapter(spec, widths[1], overrides, device="meta", drafter_dim=widths[0])
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if ours != theirs:
        differs = next((k for k in ours if theirs.get(k) != ours[k]), None) or next(iter(set(theirs) - set(ours)), "")
        raise UserInputError(f"{what} does not fit {spec.key} ({spec.class_name}, hidden {widths_text(*widths)})"
                             + (f": {differs} differs" if differs else ""))


def initial_weights(target: str, spec, widths: tuple[int, int], overrides: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights --init_from names (a checkpoint of ours or the reference's, or a run
    directory's best_model.pt), checked against the model this run builds."""
    try:
        checkpoint = checkpoint_of(Path(target))
        _, payload = load_adapter(checkpoint)
    except UserInputError as exc:
        raise UserInputError(f"--init_from: {exc}") from None
    if payload["class"] != spec.class_name:
        raise UserInputError(f"--init_from {checkpoint}: its {payload['level']} ({payload['class']}) does not fit "
                             f"this run's {spec.key} ({spec.class_name}); pick a run of the same level and sizes")
    if checkpoint_widths(payload) != tuple(widths):
        raise UserInputError(f"--init_from {checkpoint}: its weights map hidden size {widths_text(*checkpoint_widths(payload))} "
                             f"but the data's is {widths_text(*widths)}; pick a run trained on data of these models")
    try:
        _fits(payload["state_dict"], spec, widths, overrides, f"--init_from {checkpoint}")
    except UserInputError as exc:
        raise UserInputError(f"{exc}; pick a run of the same level and sizes") from None
    return payload["state_dict"]
