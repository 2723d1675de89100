"""`adapter-engine speculate`: the speedup a run's adapter delivers, measured in a real
draft–verify loop against the verifier alone (Hugging Face causal LMs); writes speculate.json."""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from engine.extract.options import MODEL_DTYPES
from engine.job_options import QueuedParser
from engine.speculate.options import SpeculateOptions

STOPPED = 130
EXAMPLE = ("adapter-engine speculate runs/L1/L1_20261205_101500 --drafter ~/models/vicuna-7b-v1.5 "
           "--verifier ~/models/Llama-2-7b-chat-hf --prompts prompts.jsonl --gamma 1,3,5,8")


def add_speculate_flags(p: argparse.ArgumentParser) -> None:
    d = "(default %(default)s)"
    p.add_argument("run", metavar="RUN_DIR|CHECKPOINT", help="the run (its best checkpoint) or a checkpoint file")
    known = " (default: what extract recorded of the run's data)"
    p.add_argument("--drafter", metavar="PATH_OR_NAME", help="the drafter (as for extract)" + known)
    p.add_argument("--verifier", metavar="PATH_OR_NAME", help="the verifier; its LM head turns the adapter's output "
                   "into draft tokens" + known)
    p.add_argument("--prompts", metavar="FILE", help="prompts, in extract's formats" + known)
    p.add_argument("--layer", type=int, help="the drafter hidden state the adapter reads, as in extract" + known
                   + ", else -1")
    p.add_argument("--drafter_layers", type=int, metavar="K", help="self-speculation: the drafter is the first K "
                   "decoder layers of its model (give the same model as --drafter and --verifier, and extract with "
                   "the same --drafter_layers)" + known)
    p.add_argument("--gamma", default="5", help=f"draft length, or a list to measure each: 1,3,5,8 {d}")
    p.add_argument("--max_new_tokens", type=int, default=64, help=f"tokens generated per prompt (EOS does not stop) {d}")
    p.add_argument("--temperature", type=float, default=0.0, help=f"0 greedy, > 0 rejection sampling {d}")
    p.add_argument("--seed", type=int, default=0, help=f"the sampling seed {d}")
    p.add_argument("--samples", type=int, default=None, metavar="K", help="use the first K prompts (default: all)")
    p.add_argument("--warmup", type=int, default=2, help=f"prompts decoded once, untimed, first {d}")
    p.add_argument("--max_prompt_tokens", type=int, default=256, help=f"a longer prompt keeps its end {d}")
    p.add_argument("--device", default="auto", help=f"auto, cpu, cuda or cuda:N {d}")
    p.add_argument("--dtype", choices=MODEL_DTYPES, default="fp32", help=f"the models' dtype {d}")
    p.add_argument("--trust_remote_code", action="store_true",
                   help="run the model repositories' own Python code (off unless asked for)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("speculate", help="measure the speedup a run's adapter delivers (writes speculate.json)",
                       description="Decode every prompt with the verifier alone (the baseline) and with the "
                                   "draft-verify loop (the drafter's state -> the adapter -> the verifier's LM head "
                                   "drafts γ tokens; one verifier forward checks them), in one process, warm-up "
                                   "excluded. Greedy decoding is checked token for token against the baseline. "
                                   "Writes RUN_DIR/speculate.json; `runs --sort speedup_measured` ranks by it. "
                                   "Needs the extra: pip install -e '.[extract]'.",
                       epilog=f"example: {EXAMPLE}")
    add_speculate_flags(p)
    p.add_argument("--json", action="store_true", help="print speculate.json's content")
    p.set_defaults(func=run)


def options_from(args: argparse.Namespace) -> SpeculateOptions:
    """The flags, with what they leave out taken from the extraction of the run's data."""
    from common.errors import UserInputError
    from engine.speculate.options import extraction_of

    given = {k: getattr(args, k) for k in ("drafter", "verifier", "prompts", "layer", "drafter_layers")}
    recorded = extraction_of(args.run) if None in given.values() else {}
    merged = {k: v if v is not None else recorded.get(k) for k, v in given.items()}
    missing = [k for k in ("drafter", "verifier", "prompts") if merged[k] is None]
    if missing:
        raise UserInputError(f"give --{missing[0]}: {args.run}'s training data records no extraction to take it from")
    return SpeculateOptions(
        run=args.run, drafter=merged["drafter"], verifier=merged["verifier"], prompts=merged["prompts"],
        layer=-1 if merged["layer"] is None else merged["layer"], drafter_layers=merged["drafter_layers"],
        gamma=args.gamma, max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
        samples=args.samples, warmup=args.warmup, device=args.device,
        dtype=args.dtype, max_prompt_tokens=args.max_prompt_tokens, trust_remote_code=args.trust_remote_code)


def parse_options(argv: list[str]) -> SpeculateOptions:
    """`queue add --speculate ARGS...`: the same flags, parsed the same way."""
    parser = QueuedParser("--speculate", "speculate")
    add_speculate_flags(parser)
    return options_from(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    from engine.console import CountProgress
    from engine.process import StopFlag

    stop = StopFlag()  # SIGTERM (queue cancel) and Ctrl-C stop between prompts; speculate.json is not written
    stop.install()
    from engine.rundir.speculation import progress_text
    from engine.speculate.run import Stopped, check, describe, measure

    plan = check(options_from(args))
    if stop.signum is not None:
        return STOPPED
    bar = CountProgress("speculate")

    def progress(status: dict) -> None:
        if not args.json:  # stdout is the JSON document alone
            bar.update(status["prompts_done"], status["prompts_total"], progress_text(status))
    try:
        result = measure(plan, progress, lambda: stop.signum is not None)
    except Stopped as exc:  # not a measurement: 130, as after Ctrl-C, so the queue calls the job cancelled
        print(f"speculate: {exc}")
        return STOPPED
    finally:
        bar.stop()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(describe(result))
        print(f"wrote {plan.run_dir}/speculate.json")
    return 0


def add_to_queue(args: argparse.Namespace, open_queue: Callable[[], Any]) -> int:
    """`queue add --speculate ...`: one job that runs `adapter-engine speculate`, checked as it
    would be before the queue is opened (a refused job writes nothing)."""
    from common.errors import UserInputError
    from engine.speculate.options import JOB_KIND
    from engine.speculate.run import check

    given = [flag for flag in ("level", "preset", "sweep") if getattr(args, flag)]
    if given:
        raise UserInputError(f"--speculate queues a measurement, not a training; drop --{given[0]}")
    options = parse_options(args.speculate).absolute()
    check(options)
    with open_queue() as q:
        busy = [job.id for job in q.jobs() if job.state in ("queued", "running")
                and job.settings.get("kind") == JOB_KIND and job.settings.get("options", {}).get("run") == options.run]
        if busy:
            raise UserInputError(f"job {busy[0]} already measures {options.run}; wait for it or cancel it")
        (job_id,) = q.add_many([(JOB_KIND, {"kind": JOB_KIND, "options": options.as_dict()})], front=args.front)
        job = q.get(job_id)
    if args.json:
        print(json.dumps([job.as_dict()], indent=2, default=str))
        return 0
    print(f"queued job {job.id}: speculate {options.run} at position {job.position}")
    print("start a worker with `adapter-engine queue worker` (or --detach) if none is running")
    return 0
