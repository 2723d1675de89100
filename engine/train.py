"""The trainer. Reads top to bottom: inputs, run directory, model and optimiser (fresh or from
last.pt: one path), the epoch loop, the end. Writes a live run directory (docs/CONTRACT.md).
Over 400 lines because a run's life is one story; what it needs before it starts is in
engine/inputs.py."""

from __future__ import annotations

import logging
import math
import os
import platform
import signal
import socket
import sys
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any

import torch

from adapters import seed
from adapters.checkpoint import adapter_payload, atomic_torch_save, load_adapter
from adapters.losses import batch_objective
from adapters.registry import build_adapter, build_kwargs, load_registry
from adapters.zoo import adapter_class
from common.fileio import DiskFull, json_bytes, read_json, write_all, write_json
from common.text import widths_text
from engine.console import EpochProgress
from engine.data.formats import Dataset
from engine.data.loader import train_loader, val_loader
from engine.device import autocast, make_optimizer, resolve_precision, to_device
from engine.distributed import DistContext, all_reduce, any_rank, broadcast
from engine.evaluate import EvalOptions, describe, evaluate, record
from engine.inputs import Inputs, prepare
from engine.lineage import lineage
from engine.metrics import MetricAccumulator
from engine.process import StopFlag
from engine.rundir.evaluation import write_eval
from engine.rundir.layout import BEST, CONFIG, CURVES, FINAL, HISTORY, LAST, LOG, RUN_DIR_FILE_ENV, new_run_dir, run_stamp
from engine.rundir.lock import RunLock
from engine.rundir.states import EXIT_DIVERGED, EXIT_DONE, EXIT_FAILED, now_iso
from engine.rundir.status import StatusWriter
from engine.rundir.steps import StepLog
from engine.system import SystemSampler
from engine.settings import TrainSettings

log = logging.getLogger("adapter-engine.train")
SYSTEM_EVERY_S = 2.0  # how often the process's CPU, memory and GPU use is sampled


class Diverged(Exception):
    pass


class StopRequested(Exception):
    pass


def setup_logging(run_dir: Path) -> logging.Handler:
    """train.log gets everything; the console gets information on stdout, warnings and errors on stderr."""
    handler = logging.FileHandler(run_dir / LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    console.addFilter(lambda record: record.levelno < logging.WARNING)
    problems = logging.StreamHandler(sys.stderr)
    problems.setLevel(logging.WARNING)
    problems.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    log.handlers[:] = [handler, console, problems]
    log.setLevel(logging.INFO)
    log.propagate = False
    return handler


def drafter_width(data: Dataset) -> dict[str, int]:
    """config.json's adapter section names the drafter's width only where it differs from the
    verifier's, so an equal-width run's config stays the reference's."""
    return {"drafter_dim": data.drafter_dim} if data.drafter_dim != data.hidden_dim else {}


def seed_config(inputs: Inputs, stamp: str, argv: list[str]) -> dict[str, Any]:
    """config.json: the reference's keys with the values it writes, plus what reproduces the run."""
    s, spec = inputs.settings, inputs.spec
    kwargs, _ = build_kwargs(spec, s.arch_overrides)
    predicts_next = adapter_class(spec.class_name).predicts_next
    loss = "0.5 * (MSE + 0.5 * CosLoss) + 0.5 * NextMSE" if predicts_next else "MSE + 0.5 * CosLoss"
    level = seed.by_class(spec.class_name)
    # An architecture key the class does not use is recorded as the reference records it: the
    # flag's value, else its CLI default.
    unused = {**seed.arch_defaults(level.number), **s.arch_overrides} if level else dict(s.arch_overrides)
    arch = {name: kwargs.get(name, unused.get(name))
            for name in ("bottleneck_dim", "num_blocks", "num_heads", "num_layers", "ffn_dim")}
    return {
        "task": seed.task_name(spec.class_name, s.vlm_only) or f"train_{s.level}",
        "vlm_only": s.vlm_only,
        "adapter": {"level": level.number if level else s.level, "name": level.name if level else spec.class_name,
                    "hidden_dim": inputs.train.hidden_dim, **drafter_width(inputs.train), **arch, "params": inputs.params},
        "data": {"train_path": s.train_data, "val_path": s.val_data or "split from train",
                 "train_samples": inputs.train.num_samples, "val_samples": inputs.val.num_samples,
                 "split": inputs.split_note},
        "training": {"epochs": s.num_epochs, "batch_size": s.batch_size, "learning_rate": s.learning_rate,
                     "early_stopping": s.early_stopping, "optimizer": "AdamW", "scheduler": "CosineAnnealingLR",
                     "loss": loss, "weight_decay": 0.01, "eta_min": 1e-6, "grad_clip": 1.0},
        "timestamp": stamp,
        "best_val_loss": None,
        "level_key": s.level,
        "level_class": spec.class_name,
        "level_description": spec.description,
        "arch": kwargs,
        "seed_command": s.seed_level is not None,
        "init_from": s.init_from,
        "warnings": inputs.warnings,
        "seed": s.seed,
        "device": str(inputs.device),
        "precision": resolve_precision(s.precision, inputs.device),
        "compile": s.compile,
        "versions": {"torch": torch.__version__, "python": platform.python_version(), "adapter_tui": _version()},
        "argv": argv,
        "host": socket.gethostname(),
        "sweep": s.sweep,
        "lineage": lineage(inputs.train, inputs.val),
        "settings": s.as_dict(),
    }


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("adapter-tui")
    except Exception:  # not installed (running from a checkout)
        return "unknown"


class Trainer:
    """One training run in one run directory (fresh or resumed)."""

    def __init__(self, inputs: Inputs, run_dir: Path, ctx: DistContext = DistContext(),
                 stop: StopFlag | None = None) -> None:
        self.inputs = inputs
        self.ctx = ctx
        self.settings = s = inputs.settings
        self.run_dir = run_dir
        self.device = inputs.device
        self.stop = stop or StopFlag()
        torch.manual_seed(s.seed)
        self.model = build_adapter(inputs.spec, inputs.train.hidden_dim, s.arch_overrides,
                                   drafter_dim=inputs.train.drafter_dim)
        if inputs.initial_state is not None:
            self.model.load_state_dict(inputs.initial_state)
        self.model.to(self.device)
        self.predicts_next = self.model.predicts_next
        self.net = self.model  # what the training step calls: the model, or its DDP wrapper
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.precision = resolve_precision(s.precision, self.device)
        if s.compile:
            self.net = torch.compile(self.net)
        self.optimizer = make_optimizer(self.model.parameters(), s.learning_rate, self.device)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=s.num_epochs, eta_min=1e-6)
        pin = self.device.type == "cuda"
        # Each batch is used up before the next is drawn, so batch buffers can be recycled.
        shard = {"rank": ctx.rank, "world_size": ctx.world_size, "pin_memory": pin, "reuse_buffers": 3,
                 "gather_ahead": pin}
        self.train_batches = train_loader(inputs.train, s.batch_size, s.seed, **shard)
        self.val_batches = val_loader(inputs.val, s.batch_size, **shard)
        self.lm_head = inputs.lm_head.to(self.device) if inputs.lm_head is not None else None
        self.history: dict[str, list] = {}
        self.epoch = 0
        self.best_val_loss = math.inf
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.status = StatusWriter(run_dir, enabled=ctx.is_main, num_epochs=s.num_epochs, device=str(self.device))
        self.steps_log = StepLog(run_dir, len(self.train_batches), enabled=ctx.is_main)
        self.system = SystemSampler(gpu_uuid=_gpu_uuid(self.device)) if ctx.is_main else None
        self._system: dict[str, float] = {}
        self._system_at = 0.0
        self.progress = EpochProgress(enabled=None if ctx.is_main else False)

    # -- checkpoints -------------------------------------------------------------------------
    def last_state(self) -> dict[str, Any]:
        """last.pt: the model, optimizer, scheduler, RNG and history, to resume from."""
        return {
            **adapter_payload(self.model, epoch=self.epoch),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "history": self.history,
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
        }

    def commit_epoch(self, row: dict[str, Any], improved: bool) -> None:
        """The epoch's history row, last.pt and (when it improved) best_model.pt, all or none:
        staged first, then moved into place together, so a full disk leaves the history, the
        checkpoints and status.json (written after) at the same epoch."""
        for key, value in row.items():
            self.history.setdefault(key, []).append(value)
        if not self.ctx.is_main:
            return
        writes = [(self.run_dir / LAST, partial(torch.save, self.last_state()))]
        if improved:
            payload = adapter_payload(self.model, epoch=self.epoch, val_loss=self.best_val_loss)
            writes.append((self.run_dir / BEST, partial(torch.save, payload)))
        history = json_bytes(self.history)
        writes.append((self.run_dir / HISTORY, lambda handle: handle.write(history)))
        try:
            write_all(writes)
        except BaseException:
            for values in self.history.values():  # not recorded: a resume redoes the epoch
                values.pop()
            raise

    @property
    def stop_signal(self) -> int | None:
        return self.stop.signum

    def system_use(self) -> dict[str, float]:
        """This process's CPU, memory and GPU use, sampled at most every SYSTEM_EVERY_S."""
        now = time.monotonic()
        if self.system is not None and now - self._system_at >= SYSTEM_EVERY_S:
            self._system, self._system_at = self.system.sample(), now
        return self._system

    def restore(self) -> None:
        """Continue from last.pt (checked by `read_resume`) when resuming; a fresh run has none."""
        state = self.inputs.resume_state
        if state is None:
            return
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.history = state["history"]
        self.epoch = state["epoch"]
        self.best_val_loss = state["best_val_loss"]
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = state["bad_epochs"]
        log.info("resumed from %s at epoch %d (best val loss %.4f)", self.run_dir / LAST, self.epoch, self.best_val_loss)

    # -- one epoch ---------------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        self.model.train()
        loader = self.train_batches
        loader.set_epoch(self.epoch)
        steps = len(loader)
        self.progress.start(self.epoch + 1, self.settings.num_epochs, steps)
        try:
            return self._train_steps(loader, steps)
        finally:
            self.progress.stop()

    def _train_steps(self, loader, steps: int) -> dict[str, float]:
        losses, cosines, tokens = [], [], 0
        started = time.perf_counter()
        for step, batch in enumerate(to_device(loader, self.device), start=1):
            with autocast(self.precision, self.device):
                objective = batch_objective(self.net, self.predicts_next, batch.egpt, batch.vl, batch.mask)
            loss, cosine = objective.loss, objective.cosine.mean()
            # every rank must take the same decision at the same step, or the others would hang
            stop, nonfinite = any_rank([self.stop_signal is not None, not torch.isfinite(loss).item()],
                                       self.ctx, self.device)
            if nonfinite:
                raise Diverged(f"non-finite loss at epoch {self.epoch + 1} step {step}")
            if stop:
                raise StopRequested
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            losses.append(loss.item())
            cosines.append(cosine.item())
            tokens += batch.num_tokens
            elapsed = time.perf_counter() - started
            epoch_eta = elapsed / step * (steps - step)
            remaining_epochs = self.settings.num_epochs - self.epoch - 1
            running_loss, rate = sum(losses) / len(losses), tokens / max(elapsed, 1e-9)
            self.steps_log.step(self.epoch * steps + step, self.epoch + step / steps, losses[-1],
                                self.optimizer.param_groups[0]["lr"], rate, self.system_use)
            self.status.update(step=step, steps_per_epoch=steps, running_loss=running_loss, tokens_per_s=rate,
                               eta_s=epoch_eta + remaining_epochs * (elapsed / step * steps),
                               system=self.system_use() or None)
            self.progress.advance(step, running_loss, rate)
        elapsed = time.perf_counter() - started
        totals = all_reduce(torch.tensor([sum(losses), sum(cosines), len(losses), tokens], dtype=torch.float64,
                                         device=self.device), self.ctx).tolist()
        return {"train_loss": totals[0] / max(totals[2], 1), "train_cos_sim": totals[1] / max(totals[2], 1),
                "train_tokens_per_s": totals[3] / max(elapsed, 1e-9), "data_wait_frac": loader.wait_s / max(elapsed, 1e-9)}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        metrics = MetricAccumulator(lm_head=self.lm_head)
        for batch in to_device(self.val_batches, self.device):
            if self.stop_signal is not None and not self.ctx.enabled:
                raise StopRequested
            with autocast(self.precision, self.device):
                objective = batch_objective(self.model, self.predicts_next, batch.egpt, batch.vl, batch.mask)
            metrics.update(objective, batch.mask)
            self.status.update()  # the heartbeat, through a long validation too
        if self.ctx.enabled:
            metrics.reduce(lambda t: all_reduce(t, self.ctx))
            if any_rank([self.stop_signal is not None], self.ctx, self.device)[0]:
                raise StopRequested
        return metrics.compute("val_")

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> int:
        s = self.settings
        self.restore()
        self.status.update(force=True, state="running", epoch=self.epoch, best_val_loss=_finite(self.best_val_loss),
                           best_epoch=self.best_epoch)
        while self.epoch < s.num_epochs:
            epoch_started = time.perf_counter()
            before = (self.epoch, self.best_val_loss, self.best_epoch, self.bad_epochs)
            lr = self.optimizer.param_groups[0]["lr"]
            train = self.train_epoch()
            val = self.validate()
            if not math.isfinite(val["val_loss"]):
                raise Diverged(f"non-finite validation loss at epoch {self.epoch + 1}")
            self.epoch += 1
            self.scheduler.step()
            improved = val["val_loss"] < self.best_val_loss
            if improved:
                self.best_val_loss, self.best_epoch, self.bad_epochs = val["val_loss"], self.epoch, 0
            else:
                self.bad_epochs += 1
            try:
                self.commit_epoch({"epoch": self.epoch, "train_loss": train["train_loss"],
                                   "train_cos_sim": train["train_cos_sim"], **val, "lr": lr,
                                   "epoch_time_s": time.perf_counter() - epoch_started,
                                   "train_tokens_per_s": train["train_tokens_per_s"],
                                   "data_wait_frac": train["data_wait_frac"]}, improved)
            except BaseException:  # the epoch is not on disk: nor is it in what status and config say
                self.epoch, self.best_val_loss, self.best_epoch, self.bad_epochs = before
                raise
            log.info("epoch %d/%d  train %.4f  val %.4f  cos %.4f  acc@0.90 %.3f  %s(%.1fs, %.0f tok/s, wait %.1f%%)",
                     self.epoch, s.num_epochs, train["train_loss"], val["val_loss"], val["val_cos_sim"],
                     val["val_accept_90"], "* " if improved else "", time.perf_counter() - epoch_started,
                     train["train_tokens_per_s"], 100 * train["data_wait_frac"])
            self.status.update(force=True, epoch=self.epoch, best_val_loss=self.best_val_loss, best_epoch=self.best_epoch)
            if s.early_stopping and self.bad_epochs >= s.early_stopping:
                log.info("early stopping: no improvement for %d epochs (best %.4f at epoch %d)",
                         self.bad_epochs, self.best_val_loss, self.best_epoch)
                break
        if self.ctx.is_main:
            atomic_torch_save(adapter_payload(self.model, epoch=self.epoch), self.run_dir / FINAL)
        return EXIT_DONE


def _gpu_uuid(device: torch.device) -> str | None:
    """The CUDA device's UUID, which NVML finds it by (indices differ under CUDA_VISIBLE_DEVICES)."""
    if device.type != "cuda":
        return None
    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    return str(uuid) if uuid else None


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def finish_config(run_dir: Path, trainer: Trainer | None, state: str) -> None:
    try:
        config = read_json(run_dir / CONFIG)
    except Exception:
        return
    if trainer is not None:
        config["best_val_loss"] = _finite(trainer.best_val_loss)
        config["best_epoch"] = trainer.best_epoch
        config["epochs_done"] = trainer.epoch
    config["state"] = state
    config["finished_at"] = now_iso()
    write_json(run_dir / CONFIG, config)


def evaluate_best(run_dir: Path, inputs: Inputs) -> None:
    """eval.json for the best checkpoint, so every finished run carries acceptance metrics."""
    try:
        model, payload = load_adapter(run_dir / BEST)
        options = EvalOptions.from_registry(load_registry(inputs.settings.config_path).eval)
        result = evaluate(model, inputs.val, options, lm_head=inputs.lm_head, device=inputs.device,
                          batch_size=inputs.settings.batch_size)
        write_eval(run_dir, record(run_dir / BEST, payload, inputs.val, result))
        log.info("eval of %s:\n%s", BEST, describe(result))
    except Exception as exc:  # evaluation must never fail a finished run
        log.warning("could not evaluate %s: %s", BEST, exc)


def open_run_dir(settings: TrainSettings, inputs: Inputs, resume_dir: Path | None, argv: list[str] | None,
                 ctx: DistContext) -> tuple[Path, RunLock | None]:
    """Rank 0 creates the run directory with its config.json and status.json (or reopens it to
    resume) and holds its lock; every rank learns its path."""
    run_dir, lock = resume_dir, None
    if ctx.is_main:
        if resume_dir is None:
            stamp = run_stamp()
            if settings.layout == "seed":  # OUTPUT_DIR/<L1..L5|L5F|B1>_<stamp>, as the reference writes it
                run_dir = new_run_dir(Path(settings.output_dir),
                                      seed.run_prefix(settings.seed_level, settings.vlm_only), stamp, nested=False)
            else:
                run_dir = new_run_dir(Path(settings.output_dir), settings.level, stamp)
        lock = RunLock(run_dir)
        lock.acquire()  # refuses a second trainer on the same run (a resume of a live run)
        if resume_dir is None:
            write_json(run_dir / CONFIG, seed_config(inputs, stamp, argv or sys.argv))
        StatusWriter(run_dir, num_epochs=settings.num_epochs, device=str(inputs.device)).update(force=True)
    run_dir = Path(broadcast(str(run_dir), ctx))
    if ctx.is_main and os.environ.get(RUN_DIR_FILE_ENV):
        Path(os.environ[RUN_DIR_FILE_ENV]).write_text(str(run_dir.resolve()))
    return run_dir, lock


def use_local_device(inputs: Inputs, ctx: DistContext) -> None:
    """Under torchrun with CUDA, each rank takes the GPU of its local rank."""
    if ctx.enabled and inputs.device.type == "cuda":
        inputs.device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(inputs.device)


def run_training(settings: TrainSettings, resume_dir: Path | None = None, argv: list[str] | None = None,
                 resume_state: dict[str, Any] | None = None) -> int:
    """Validate, create or reopen the run directory, train, and record the outcome."""
    from engine import distributed

    stop = StopFlag()
    previous = stop.install()
    try:
        inputs = prepare(settings, resume_state)  # UserInputError -> exit 2 before anything is written
        if stop.signum is not None:
            return EXIT_DONE  # stopped before there was a run to record
        ctx = distributed.init(inputs.device)
        use_local_device(inputs, ctx)
        run_dir, lock = open_run_dir(settings, inputs, resume_dir, argv, ctx)
        try:
            return _train(inputs, run_dir, ctx, stop)
        finally:
            if lock is not None:
                lock.release()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _train(inputs: Inputs, run_dir: Path, ctx: DistContext, stop: StopFlag) -> int:
    from engine import distributed

    settings = inputs.settings
    file_handler = setup_logging(run_dir) if ctx.is_main else None
    if not ctx.is_main:
        log.handlers[:] = [logging.StreamHandler(sys.stderr)]
        log.setLevel(logging.WARNING)
    log.info("run directory %s", run_dir)
    for warning in inputs.warnings:
        log.warning(warning)
    if inputs.split_note:
        log.info(inputs.split_note)
    log.info("level %s (%s, %s params) on %s%s; %d train / %d val samples, hidden %s",
             settings.level, inputs.spec.class_name, f"{inputs.params:,}", inputs.device,
             f" x {ctx.world_size} ranks" if ctx.enabled else "",
             inputs.train.num_samples, inputs.val.num_samples, widths_text(*inputs.train.widths))
    trainer: Trainer | None = None
    state, code, error = "failed", EXIT_FAILED, None
    try:
        trainer = Trainer(inputs, run_dir, ctx, stop)
        try:
            if stop.signum is not None:
                raise StopRequested
            code = trainer.run()
            state = "done"
        finally:
            trainer.train_batches.close()  # the prefetch threads and the chunk loaded ahead
            trainer.val_batches.close()
    except StopRequested:
        state, code = "cancelled", EXIT_DONE
        kept = (f"last.pt holds epoch {trainer.epoch}" if trainer and (run_dir / LAST).is_file()
                else "no epoch had finished, so there is no last.pt to resume from")
        log.info("stopped by signal %s; %s", stop.signum, kept)
    except Diverged as exc:
        state, code, error = "diverged", EXIT_DIVERGED, str(exc)
        kept = "best_model.pt is kept" if (run_dir / BEST).is_file() else "no epoch had finished: no checkpoint"
        log.error("diverged: %s; %s", exc, kept)
    except DiskFull as exc:  # one line everywhere: which file, how much space is left
        error = str(exc)
        log.error("failed: %s", error)
    except Exception as exc:  # any other failure: one line in status.json, the traceback in train.log
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}".rstrip(": ")
        log.error("failed: %s\n%s", error, traceback.format_exc())
    distributed.shutdown(ctx)
    if ctx.is_main:
        try:
            finish_run(run_dir, inputs, trainer, state, error)
        except DiskFull as exc:  # not even status.json fits: say so, once
            log.error("could not record the end of the run: %s", exc)
    if file_handler is not None:
        file_handler.close()
    return code


def finish_run(run_dir: Path, inputs: Inputs, trainer: Trainer | None, state: str, error: str | None) -> None:
    """Final status, config, curves and evaluation (rank 0 only)."""
    if trainer is not None:
        trainer.status.update(force=True, state=state, error=error)
    else:
        StatusWriter(run_dir, state=state, error=error).update(force=True)
    finish_config(run_dir, trainer, state)
    if state != "done":
        return
    from engine.plots import save_curves

    try:
        save_curves(run_dir / HISTORY, run_dir / CURVES)
    except Exception as exc:  # a plot must never fail a finished run
        log.warning("could not draw %s: %s", CURVES, exc)
    log.info("done: best val loss %.4f at epoch %s", trainer.best_val_loss, trainer.best_epoch)
    if not inputs.settings.no_eval:
        evaluate_best(run_dir, inputs)
