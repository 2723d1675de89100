"""One speculation, start to end: every input checked before a model's weights are loaded
(options, run, adapter, prompts, configs, tokenizers, lengths), then the models loaded and each
prompt decoded by the verifier alone (the baseline) and by the draft–verify loop at every γ,
interleaved so drift in the machine's speed falls on both alike, and speculate.json written."""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from adapters.checkpoint import load_adapter, widths
from common.errors import UserInputError
from common.fileio import unwritable_dir
from common.text import widths_text
from engine.device import pick_device
from engine.extract import models
from engine.extract.prompts import read_prompts
from engine.rundir.layout import checkpoint_of
from engine.rundir.speculation import write_progress, write_speculation
from engine.rundir.states import now_iso
from engine.speculate.loop import (PARTS, AdapterDrafter, CachedLM, Clock, DecodeStats, Sampler, baseline_decode,
                                   speculative_decode)
from engine.speculate.options import SpeculateOptions

WHY_NOT = {  # the levels a draft cannot run, and why
    "verifier": "it reads the verifier's own hidden states (B1 is an upper bound on what an adapter can reach, "
                "not a drafter)",
    "both": "it reads the verifier's hidden state at the very position it predicts, which a draft does not have "
            "until the verifier has checked it",
}


class Stopped(Exception):
    """SIGTERM or Ctrl-C between prompts: nothing is written to speculate.json."""


@dataclass
class Plan:
    """Everything checked, no model loaded yet."""
    options: SpeculateOptions
    run_dir: Path
    checkpoint: Path
    adapter: torch.nn.Module
    payload: dict[str, Any]
    prompts: list[list[int]]
    prompts_sha256: str
    device: torch.device
    drafter_config: dict[str, Any]
    verifier_config: dict[str, Any]
    self_speculation: bool


def _same_vocabulary(a: Any, b: Any) -> bool:
    return a.get_vocab() == b.get_vocab()


def _tokenize(tokenizer: Any, sample: dict[str, Any], cap: int) -> list[int]:
    if "messages" in sample:
        text = tokenizer.apply_chat_template(sample["messages"], tokenize=False, add_generation_prompt=True)
    else:
        text = sample["text"]
    bos = getattr(tokenizer, "bos_token", None)
    ids = tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]
    return list(ids)[-cap:]  # the end of a long prompt is what the next token follows


def check(options: SpeculateOptions) -> Plan:
    """Everything a speculation needs, checked; raises UserInputError and loads no model."""
    problem = options.problem()
    if problem:
        raise UserInputError(problem)
    options = options.absolute()
    device = pick_device(options.device)
    checkpoint = checkpoint_of(Path(options.run))
    run_dir = options.run_dir()
    problem = unwritable_dir(run_dir)
    if problem:
        raise UserInputError(f"cannot write speculate.json: {problem}")
    adapter, payload = load_adapter(checkpoint)
    level = payload.get("level", "?")
    if adapter.consumes in WHY_NOT:
        raise UserInputError(f"{level} cannot draft: {WHY_NOT[adapter.consumes]}; measure a level that reads the "
                             "drafter alone (L1-L5)")
    samples = read_prompts(options.prompts)[: options.samples]
    configs = [models.describe(models.load_config(name, flag, options.trust_remote_code))
               for name, flag in ((options.drafter, "--drafter"), (options.verifier, "--verifier"))]
    drafter_config, verifier_config = configs
    if options.drafter_layers is not None:
        if drafter_config["layers"] is not None and options.drafter_layers > drafter_config["layers"]:
            raise UserInputError(f"--drafter_layers {options.drafter_layers}: the drafter has "
                                 f"{drafter_config['layers']} decoder layers")
        drafter_config = {**drafter_config, "layers": options.drafter_layers}
    layers = drafter_config["layers"]
    if layers is not None and not -(layers + 1) <= options.layer <= layers:
        raise UserInputError(f"--layer {options.layer}: the drafter has {layers + 1} hidden states (0 = embeddings, "
                             f"{layers} = the last; negative counts from the end)")
    d_width, v_width = widths(payload)
    for config, width, who in ((drafter_config, d_width, "drafter"), (verifier_config, v_width, "verifier")):
        if config["hidden_size"] is not None and config["hidden_size"] != width:
            raise UserInputError(f"the {who}'s hidden size is {config['hidden_size']} but {checkpoint.name} of "
                                 f"{level} maps {widths_text(d_width, v_width)}; give the models its data was extracted from")
    tokenizers = [models.load_tokenizer(name, flag, options.trust_remote_code)
                  for name, flag in ((options.drafter, "--drafter"), (options.verifier, "--verifier"))]
    if not _same_vocabulary(*tokenizers):
        raise UserInputError("the drafter's and the verifier's tokenizers differ, so drafted tokens cannot be fed "
                             "back to the drafter; speculate needs two models with one vocabulary")
    if any("messages" in s for s in samples) and not getattr(tokenizers[1], "chat_template", None):
        raise UserInputError(f"--prompts {options.prompts} has chat messages but the verifier's tokenizer has no "
                             "chat template; give {\"text\": ...} lines instead")
    prompts = [_tokenize(tokenizers[1], s, options.max_prompt_tokens) for s in samples]
    if not all(prompts):
        raise UserInputError(f"--prompts {options.prompts}: a prompt tokenizes to nothing")
    longest = max(map(len, prompts)) + options.max_new_tokens
    limits = [(c["max_positions"], f"the {who}'s {c['max_positions']} positions")
              for c, who in ((drafter_config, "drafter"), (verifier_config, "verifier"))]
    positions = getattr(adapter, "positions", None)
    if isinstance(positions, torch.Tensor):
        limits.append((positions.shape[0], f"{level}'s max_seq_len {positions.shape[0]}"))
    for limit, what in limits:
        if limit is not None and longest > limit:
            raise UserInputError(f"the longest prompt ({longest - options.max_new_tokens} tokens) plus "
                                 f"--max_new_tokens {options.max_new_tokens} exceeds {what}; lower "
                                 "--max_new_tokens or --max_prompt_tokens")
    same_model = Path(options.drafter) == Path(options.verifier)
    return Plan(options, run_dir, checkpoint, adapter, payload, prompts,
                hashlib.sha256(Path(options.prompts).read_bytes()).hexdigest(), device, drafter_config,
                verifier_config, same_model)


def _load(plan: Plan) -> tuple[Any, Any, AdapterDrafter]:
    o = plan.options
    verifier = models.load_model(o.verifier, "--verifier", o.dtype, plan.device, o.trust_remote_code)
    drafter = verifier if plan.self_speculation else models.load_model(o.drafter, "--drafter", o.dtype, plan.device,
                                                                          o.trust_remote_code)
    if o.drafter_layers is not None:
        drafter = models.early_exit(drafter, o.drafter_layers)
    head = verifier.get_output_embeddings()
    if head is None:
        raise UserInputError("the verifier has no output embedding (LM head) to draft through")
    adapter = plan.adapter.to(plan.device).eval()
    return drafter, verifier, AdapterDrafter(adapter, head)


def _summary(stats: DecodeStats, clock: Clock, wall: float, baseline_s: float, baseline_tokens: int,
             failures: list[int] | None) -> dict[str, Any]:
    spent = dict(clock.spent)
    drafting = spent["drafter"] + spent["adapter"]
    overhead = max(0.0, wall - sum(spent.values()))
    return {
        "tau": stats.tau, "accept_rate": stats.accepted / stats.drafted if stats.drafted else None,
        "accept_by_position": stats.accept_by_position(),
        "draft_ms_per_token": 1000 * drafting / stats.drafted if stats.drafted else None,
        "verify_ms_per_step": 1000 * spent["verifier"] / stats.steps if stats.steps else None,
        "baseline_tokens_per_s": baseline_tokens / baseline_s if baseline_s > 0 else None,
        "speculative_tokens_per_s": stats.tokens / wall if wall > 0 else None,
        "speedup": baseline_s / wall if wall > 0 else None,
        "tokens_generated": stats.tokens, "verifier_steps": stats.steps, "drafted": stats.drafted,
        "accepted": stats.accepted,
        "greedy_parity": None if failures is None else not failures, "parity_failures": failures or [],
        "time_s": {**spent, "overhead": overhead, "total": wall},
        "overhead_share": overhead / wall if wall > 0 else None,
    }


def measure(plan: Plan, progress: Callable[[dict[str, Any]], None] = lambda status: None,
            stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Run a checked plan: speculate.json's content. Raises Stopped when `stop()` turns true."""
    gammas = plan.options.gammas
    started = now_iso()
    status = {"state": "running", "pid": os.getpid(), "host": socket.gethostname(), "started_at": started,
              "prompts_done": 0, "prompts_total": len(plan.prompts), "gamma": gammas[0], "gammas": len(gammas),
              "tau": None, "error": None}
    write_progress(plan.run_dir, status)
    try:
        result = _measure(plan, gammas, status, progress, stop)
    except BaseException as exc:
        status.update(state="cancelled" if isinstance(exc, (Stopped, KeyboardInterrupt)) else "failed",
                      error=str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                      updated_at=now_iso())
        write_progress(plan.run_dir, status)
        raise
    result["started"] = started
    write_speculation(plan.run_dir, result)
    status.update(state="done", updated_at=now_iso())
    write_progress(plan.run_dir, status)
    return result


def _measure(plan: Plan, gammas: tuple[int, ...], status: dict[str, Any],
             progress: Callable[[dict[str, Any]], None], stop: Callable[[], bool]) -> dict[str, Any]:
    o = plan.options
    drafter_lm, verifier_lm, adapter = _load(plan)
    drafter = CachedLM(drafter_lm, plan.device, o.layer)
    verifier = CachedLM(verifier_lm, plan.device)
    sampler = Sampler(o.temperature, o.seed, plan.device)
    untimed = Clock(plan.device)
    for prompt in plan.prompts[: o.warmup]:  # kernels chosen, caches allocated: not in the figures
        baseline_decode(prompt, verifier, o.max_new_tokens, untimed)
        speculative_decode(prompt, drafter, adapter, verifier, gammas[0], o.max_new_tokens, sampler, untimed)
    baseline_clock = Clock(plan.device)
    baseline_s, baseline_tokens = 0.0, 0
    clocks = {g: Clock(plan.device) for g in gammas}
    stats = {g: DecodeStats(g) for g in gammas}
    walls = dict.fromkeys(gammas, 0.0)
    failures: dict[int, list[int]] = {g: [] for g in gammas}
    for index, prompt in enumerate(plan.prompts):
        if stop():
            raise Stopped(f"stopped after {index} of {len(plan.prompts)} prompts; speculate.json is not written")
        start = baseline_clock.now()
        reference = baseline_decode(prompt, verifier, o.max_new_tokens, baseline_clock)
        baseline_s += baseline_clock.now() - start
        baseline_tokens += len(reference)
        for g in gammas:
            start = clocks[g].now()
            out, step_stats = speculative_decode(prompt, drafter, adapter, verifier, g, o.max_new_tokens, sampler,
                                                 clocks[g])
            walls[g] += clocks[g].now() - start
            stats[g].merge(step_stats)
            if out != reference:
                failures[g].append(index)
        status.update(prompts_done=index + 1, tau=stats[gammas[0]].tau, updated_at=now_iso())
        write_progress(plan.run_dir, status)
        progress(status)
    greedy = sampler.greedy
    per_gamma = {str(g): _summary(stats[g], clocks[g], walls[g], baseline_s, baseline_tokens,
                                  failures[g] if greedy else None) for g in gammas}
    return {
        "checkpoint": str(plan.checkpoint), "level": plan.payload.get("level"), "epoch": plan.payload.get("epoch"),
        "drafter": {**plan.drafter_config, "path": o.drafter, "drafter_layers": o.drafter_layers, "layer": o.layer},
        "verifier": {**plan.verifier_config, "path": o.verifier},
        "self_speculation": plan.self_speculation,
        "prompts": o.prompts, "prompts_sha256": plan.prompts_sha256, "prompts_count": len(plan.prompts),
        "settings": o.settings(), "device": str(plan.device), "host": socket.gethostname(),
        "gamma": gammas[0], "lossless_check": "greedy" if greedy else "sampling (not token-checked)",
        "baseline": {"tokens": baseline_tokens, "seconds": baseline_s,
                     "tokens_per_s": baseline_tokens / baseline_s if baseline_s > 0 else None},
        "parts": list(PARTS), "per_gamma": per_gamma, "finished": now_iso(),
    }


def describe(result: dict[str, Any]) -> str:
    """The figures as a short table, one line a γ."""
    base = result["baseline"]
    lines = [f"{result['prompts_count']} prompts × {result['settings']['max_new_tokens']} new tokens on "
             f"{result['device']}; baseline (verifier alone): {base['tokens_per_s']:.1f} tokens/s",
             f"{'γ':>3} {'τ':>6} {'accept':>7} {'draft ms/tok':>12} {'verify ms':>10} {'tokens/s':>9} {'speedup':>8}"
             "  lossless"]
    for gamma, row in result["per_gamma"].items():
        parity = {True: "yes", False: f"NO (prompts {row['parity_failures'][:5]})", None: "sampled"}[row["greedy_parity"]]
        accept = "—" if row["accept_rate"] is None else f"{row['accept_rate']:.1%}"
        draft = "—" if row["draft_ms_per_token"] is None else f"{row['draft_ms_per_token']:.2f}"
        lines.append(f"{gamma:>3} {row['tau']:>6.2f} {accept:>7} {draft:>12} {row['verify_ms_per_step']:>10.2f} "
                     f"{row['speculative_tokens_per_s']:>9.1f} {row['speedup']:>7.2f}x  {parity}")
    first = result["per_gamma"][str(result["gamma"])]["time_s"]
    total = first["total"] or 1.0
    lines.append(f"where the time went at γ={result['gamma']}: " + ", ".join(
        f"{part} {first[part] / total:.0%}" for part in (*PARTS, "overhead")))
    return "\n".join(lines)
