"""One extraction, start to end: every input checked before anything is written (the options,
the prompts, OUT, the models' configs and tokenizers), then the models loaded and the prompts
run through both in batches, a chunk written at a time, resumable, and finally each split's
index.json and the verifier's lm_head.pt."""

from __future__ import annotations

import hashlib
import os
import random
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from adapters.checkpoint import atomic_torch_save
from adapters.registry import register_dataset, register_problem
from common.errors import UserInputError
from common.fileio import ReadError, make_dirs, read_json, unwritable_dir, write_json
from engine.device import pick_device
from engine.extract import models
from engine.extract.align import align, token_ends
from engine.extract.options import LM_HEAD, LOCK, SPLITS, STATE, STATUS, ExtractOptions
from engine.extract.output import SplitWriter, empty_split_state
from engine.extract.prompts import read_prompts
from engine.process import start_of
from engine.rundir.layout import RUN_DIR_FILE_ENV
from engine.rundir.lock import RunLock
from engine.rundir.states import now_iso

@dataclass
class Plan:
    """Everything checked, nothing written yet."""
    options: ExtractOptions
    out: Path
    samples: list[dict[str, Any]]
    val: set[int]
    state: dict[str, Any]              # {"what", "train", "val"}: fresh, or the resumed one
    resumed: bool
    device: torch.device
    drafter_config: dict[str, Any]
    verifier_config: dict[str, Any]
    tokenizers: tuple[Any, Any]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _val_indices(n: int, val_split: float, seed: int) -> set[int]:
    count = min(n - 1, max(1, round(n * val_split)))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return set(order[:count])


def _layer_index(layer: int, layers: int | None, flag: str) -> None:
    if layers is not None and not -(layers + 1) <= layer <= layers:
        raise UserInputError(f"--layer {layer}: {flag} has {layers + 1} hidden states (0 = embeddings, "
                             f"{layers} = the last; negative counts from the end)")


def check(options: ExtractOptions) -> Plan:
    """Everything a run needs, checked; raises UserInputError and writes nothing."""
    problem = options.problem()
    if problem:
        raise UserInputError(problem)
    options = options.absolute()
    device = pick_device(options.device)
    samples = read_prompts(options.prompts)
    if options.samples is not None:
        samples = samples[: options.samples]
    if len(samples) < 2:
        raise UserInputError(f"--prompts {options.prompts} holds {len(samples)} sample; two at least (one for "
                             "validation)")
    what = options.what(_sha256(Path(options.prompts)))
    out = Path(options.out)
    state, resumed = _resume_state(out, what)
    configs = [models.describe(models.load_config(name, flag, options.trust_remote_code))
               for name, flag in ((options.drafter, "--drafter"), (options.verifier, "--verifier"))]
    if options.drafter_layers is not None:
        if configs[0]["layers"] is not None and options.drafter_layers > configs[0]["layers"]:
            raise UserInputError(f"--drafter_layers {options.drafter_layers}: the drafter has {configs[0]['layers']} "
                                 "decoder layers")
        configs[0] = {**configs[0], "layers": options.drafter_layers}
    for config, flag in zip(configs, ("--drafter", "--verifier")):
        _layer_index(options.layer, config["layers"], flag)
    if options.register:
        problem = register_problem(options.config, options.register)
        if problem:
            raise UserInputError(f"--register {options.register}: {problem}")
    tokenizers = (models.load_tokenizer(options.drafter, "--drafter", options.trust_remote_code),
                  models.load_tokenizer(options.verifier, "--verifier", options.trust_remote_code))
    if any("messages" in s for s in samples) and not getattr(tokenizers[1], "chat_template", None):
        raise UserInputError(f"--prompts {options.prompts} has chat messages but the verifier's tokenizer has no "
                             "chat template; give {\"text\": ...} lines instead")
    return Plan(options, out, samples, _val_indices(len(samples), options.val_split, options.seed), state, resumed,
                device, configs[0], configs[1], tokenizers)


def _resume_state(out: Path, what: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A fresh state for a new OUT; the saved one for an unfinished extraction with the same
    settings; anything else in OUT is refused (never overwritten)."""
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{out} is a file; give a directory for the dataset")
    problem = unwritable_dir(out)
    if problem:
        raise UserInputError(f"cannot write the dataset: {problem}")
    fresh = {"what": what, **{split: empty_split_state() for split in SPLITS}}
    if not out.exists() or all(entry.name == LOCK for entry in out.iterdir()):
        return fresh, False
    try:
        saved = read_json(out / STATE)
    except ReadError:
        saved = None
    if isinstance(saved, dict) and saved.get("what") == what:
        return saved, True  # unfinished (even if killed while writing the index files at the end)
    if any((out / split / "index.json").exists() for split in SPLITS):
        raise UserInputError(f"{out} already holds an extracted dataset; give another OUT")
    if saved is None:
        raise UserInputError(f"{out} is not empty and holds no unfinished extraction; give a new or empty OUT")
    raise UserInputError(f"{out} holds an unfinished extraction with other settings or prompts; run it with those "
                         "to resume, or give another OUT")


def _render(sample: dict[str, Any], verifier_tokenizer: Any) -> str:
    if "text" in sample:
        return sample["text"]
    return verifier_tokenizer.apply_chat_template(sample["messages"], tokenize=False)


def _tokenize(tokenizer: Any, text: str, cap: int | None) -> tuple[list[int], list[tuple[int, int]]]:
    bos = getattr(tokenizer, "bos_token", None)
    special = not (bos and text.startswith(bos))  # a chat template that writes BOS itself: not twice
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=special, truncation=cap is not None,
                        max_length=cap)
    return list(encoded["input_ids"]), [tuple(o) for o in encoded["offset_mapping"]]


def _status(out: Path, plan: Plan, done: int, started: str, state: str = "running", error: str | None = None) -> None:
    train, val = plan.state["train"], plan.state["val"]
    text_tokens = train["text_tokens"] + val["text_tokens"]
    write_json(out / STATUS, {
        "state": state, "pid": os.getpid(), "pid_start": start_of(os.getpid()), "host": socket.gethostname(),
        "started_at": started, "updated_at": now_iso(), "samples_done": done, "samples_total": len(plan.samples),
        "train_samples": train["samples"], "val_samples": val["samples"],
        "alignment_rate": (train["aligned"] + val["aligned"]) / text_tokens if text_tokens else None,
        "error": error})


class Stopped(Exception):
    """The extraction was asked to stop (SIGTERM, Ctrl-C): what is written stays, to resume."""


def extract(plan: Plan, progress: Callable[[int, int, str], None] = lambda done, total, line: None,
            stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Run a checked plan. Returns the summary that index.json's `extraction` records; raises
    Stopped when `stop()` turns true (checked between batches)."""
    out = plan.out
    make_dirs(out)
    lock = RunLock(out, LOCK, "extracted")
    lock.acquire()
    try:  # what OUT holds, again under the lock: another extraction may have moved it on since check()
        plan.state, plan.resumed = _resume_state(out, plan.state["what"])
        return _extract(plan, progress, stop)
    finally:
        lock.release()


def _extract(plan: Plan, progress: Callable[[int, int, str], None], stop: Callable[[], bool]) -> dict[str, Any]:
    o, out = plan.options, plan.out
    started = now_iso()
    if os.environ.get(RUN_DIR_FILE_ENV):  # the queue worker learns where this job writes
        Path(os.environ[RUN_DIR_FILE_ENV]).write_text(str(out.resolve()))
    writers = {split: SplitWriter(out / split, o.format, o.store, o.chunk_size, plan.state[split]) for split in SPLITS}
    verifier = models.load_model(o.verifier, "--verifier", o.dtype, plan.device, o.trust_remote_code)
    drafter = verifier if Path(o.drafter) == Path(o.verifier) else models.load_model(
        o.drafter, "--drafter", o.dtype, plan.device, o.trust_remote_code)
    if o.drafter_layers is not None:
        drafter = models.early_exit(drafter, o.drafter_layers)
    caps = [c["max_positions"] for c in (plan.drafter_config, plan.verifier_config)]
    todo = [i for i in range(len(plan.samples))
            if i >= plan.state["val" if i in plan.val else "train"]["next"]]
    done = len(plan.samples) - len(todo)
    write_json(out / STATE, plan.state)
    _status(out, plan, done, started)
    try:
        for start in range(0, len(todo), o.batch_size):
            if stop():
                raise Stopped(f"stopped after {done} of {len(plan.samples)} samples; run the same command again "
                              "to resume")
            batch = todo[start:start + o.batch_size]
            _run_batch(plan, batch, writers, drafter, verifier, caps)
            write_json(out / STATE, plan.state)  # after a chunk, the state says so: resume starts after it
            done += len(batch)
            _status(out, plan, done, started)
            progress(done, len(plan.samples), f"{done}/{len(plan.samples)} samples")
        for writer in writers.values():
            writer.flush()
        extraction = summary(plan, started)
        for writer in writers.values():
            writer.finish(extraction)
        atomic_torch_save({"lm_head_weight": models.lm_head(verifier)}, out / LM_HEAD)
    except BaseException as exc:  # OUT stays, with the state to resume from
        state = ("cancelled" if isinstance(exc, Stopped) else "interrupted" if isinstance(exc, KeyboardInterrupt)
                 else "failed")
        _status(out, plan, done, started, state,
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise
    (out / STATE).unlink(missing_ok=True)
    _status(out, plan, done, started, "done")
    return extraction


def _run_batch(plan: Plan, batch: list[int], writers: dict[str, SplitWriter], drafter: Any, verifier: Any,
               caps: list[int | None]) -> None:
    o = plan.options
    d_tok, v_tok = plan.tokenizers
    kept, d_ids, v_ids = [], [], []
    for i in batch:
        text = _render(plan.samples[i], v_tok)
        a_ids, a_off = _tokenize(d_tok, text, caps[0])
        b_ids, b_off = _tokenize(v_tok, text, caps[1])
        pairs = align(a_off, b_off)[: o.max_seq]
        if not pairs:
            continue  # nothing in common (an empty text): no sample
        kept.append((i, pairs, len(token_ends(b_off[: pairs[-1][1] + 1]))))  # text tokens in the kept span
        d_ids.append(a_ids[: pairs[-1][0] + 1])
        v_ids.append(b_ids[: pairs[-1][1] + 1])
    if not kept:
        return
    d_states = models.hidden_states(drafter, d_ids, o.layer, plan.device)
    v_states = models.hidden_states(verifier, v_ids, o.layer, plan.device)
    for (i, pairs, text_tokens), d, v in zip(kept, d_states, v_states):
        rows_d = torch.tensor([a for a, _ in pairs])
        rows_v = torch.tensor([b for _, b in pairs])
        split = "val" if i in plan.val else "train"
        writers[split].add(d[rows_d], v[rows_v], i, len(pairs), text_tokens)


def register(plan: Plan) -> Path | None:
    """--register NAME: the finished dataset as [datasets.NAME] of adapters.toml."""
    if not plan.options.register:
        return None
    return register_dataset(plan.options.config, plan.options.register, plan.out / "train", plan.out / "val")


def summary(plan: Plan, started: str) -> dict[str, Any]:
    o = plan.options
    train, val = plan.state["train"], plan.state["val"]
    text_tokens = train["text_tokens"] + val["text_tokens"]
    aligned = train["aligned"] + val["aligned"]
    return {**asdict(o), "drafter_model": plan.drafter_config, "verifier_model": plan.verifier_config,
            "layer": o.layer, "alignment_rate": aligned / text_tokens if text_tokens else None,
            "prompts_sha256": plan.state["what"]["prompts_sha256"], "started": started,
            "finished": now_iso(), "samples": len(plan.samples), "lm_head": LM_HEAD}
