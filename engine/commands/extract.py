"""`adapter-engine extract`: a dataset from a drafter and a verifier (Hugging Face causal LMs)."""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from engine.extract.options import FORMATS, MODEL_DTYPES, STORES, ExtractOptions
from engine.job_options import QueuedParser

EXAMPLE = ("adapter-engine extract --drafter ~/models/vicuna-7b-v1.5 --verifier ~/models/Llama-2-7b-chat-hf "
           "--prompts prompts.jsonl --dtype bf16 --store bf16 runs/datasets/chat7b --register chat7b")


def add_extract_flags(p: argparse.ArgumentParser) -> None:
    d = "(default %(default)s)"
    p.add_argument("--drafter", required=True, metavar="PATH_OR_NAME",
                   help="the drafter: a model directory, or a model name in the local Hugging Face cache")
    p.add_argument("--verifier", required=True, metavar="PATH_OR_NAME", help="the verifier (the model the adapter "
                   "aligns to; its chat template renders chat prompts and its LM head becomes lm_head.pt)")
    p.add_argument("--prompts", required=True, metavar="FILE", help='JSON lines ({"text": ...} or {"messages": '
                   "[...]}, rendered with the verifier's chat template) or plain text, one sample a line")
    p.add_argument("out", metavar="OUT", help="the dataset directory to write (OUT/train, OUT/val, OUT/lm_head.pt)")
    p.add_argument("--layer", type=int, default=-1, help="which entry of the models' hidden_states: 0 the "
                   "embeddings, N after block N, -1 the last (for Llama-family models after the final norm, so the "
                   f"verifier's LM head applies to it directly) {d}")
    p.add_argument("--drafter_layers", type=int, metavar="K", help="self-speculation: the drafter is the first K "
                   "decoder layers of its model (give one model as --drafter and --verifier; speculate takes the "
                   "same option)")
    p.add_argument("--max_seq", type=int, default=256, help=f"aligned positions kept per sample {d}")
    p.add_argument("--samples", type=int, default=None, help="use the first N prompts (default: all)")
    p.add_argument("--batch_size", type=int, default=8, help=f"prompts per forward pass {d}")
    p.add_argument("--chunk_size", type=int, default=256, help=f"samples per chunk file {d}")
    p.add_argument("--dtype", choices=MODEL_DTYPES, default="fp32", help=f"the models' dtype {d}")
    p.add_argument("--store", choices=STORES, default="fp32", help=f"the stored hidden states' dtype {d}")
    p.add_argument("--device", default="auto", help=f"auto, cpu, cuda or cuda:N {d}")
    p.add_argument("--val_split", type=float, default=0.1, help=f"share of prompts for OUT/val {d}")
    p.add_argument("--seed", type=int, default=0, help=f"seed of the train/val split {d}")
    p.add_argument("--format", choices=FORMATS, default="chunked", help=f"the dataset format {d}")
    p.add_argument("--trust_remote_code", action="store_true",
                   help="run the model repositories' own Python code (off unless asked for)")
    p.add_argument("--register", metavar="NAME", help="once done, add [datasets.NAME] to adapters.toml, so "
                   "`train --dataset NAME` and the app's dataset list find it")
    p.add_argument("--config", metavar="PATH", help="the adapters.toml --register writes (default: the project's)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="build a dataset from a drafter and a verifier model (transformers)",
                       description="Run both models (of one hidden size: the adapters map H to H) over the same "
                                   "prompts and store their hidden states where "
                                   "both tokenizers end a token at the same character (identical tokenizers align "
                                   "every token), in the chunked (or packed) dataset format, with the verifier's "
                                   "lm_head.pt. Everything is checked before the first byte is written; an "
                                   "interrupted extraction resumes from its last complete chunk when run again "
                                   "with the same command. Needs the extra: pip install -e '.[extract]'.",
                       epilog=f"example: {EXAMPLE}")
    add_extract_flags(p)
    p.set_defaults(func=run)


def options_from(args: argparse.Namespace) -> ExtractOptions:
    return ExtractOptions(
        drafter=args.drafter, verifier=args.verifier, prompts=args.prompts, out=args.out, layer=args.layer,
        drafter_layers=args.drafter_layers, max_seq=args.max_seq, samples=args.samples, batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        dtype=args.dtype, store=args.store, device=args.device, val_split=args.val_split, seed=args.seed,
        format=args.format, trust_remote_code=args.trust_remote_code, register=args.register, config=args.config)


def parse_options(argv: list[str]) -> ExtractOptions:
    """`queue add --extract ARGS...`: the same flags, parsed the same way."""
    parser = QueuedParser("--extract", "extract")
    add_extract_flags(parser)
    return options_from(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    from engine.console import CountProgress
    from engine.process import StopFlag

    stop = StopFlag()  # SIGTERM (queue cancel) and Ctrl-C stop between batches; OUT stays resumable
    stop.install()
    from engine.extract.run import Stopped, check, extract, register

    plan = check(options_from(args))
    if stop.signum is not None:
        return 0  # stopped before anything was written
    if plan.resumed:
        print(f"resuming {plan.out}: {plan.state['train']['samples'] + plan.state['val']['samples']} samples in "
              "complete chunks already", flush=True)
    bar = CountProgress("extract")
    try:
        extraction = extract(plan, bar.update, lambda: stop.signum is not None)
    except Stopped as exc:
        print(f"extract: {exc}")
        return 0
    finally:
        bar.stop()
    rate = extraction["alignment_rate"]
    print(f"wrote {plan.out}/train ({plan.state['train']['samples']} samples) and {plan.out}/val "
          f"({plan.state['val']['samples']} samples), hidden {plan.verifier_config['hidden_size']}, "
          f"{plan.state['train']['tokens'] + plan.state['val']['tokens']} tokens, alignment rate "
          f"{'n/a' if rate is None else f'{rate:.3f}'}, and {plan.out}/lm_head.pt")
    registered = register(plan)
    if registered:
        print(f"registered [datasets.{plan.options.register}] in {registered}: `adapter-engine train --dataset "
              f"{plan.options.register}` trains on it")
    return 0


def add_to_queue(args: argparse.Namespace, open_queue: Callable[[], Any]) -> int:
    """`queue add --extract ...`: one job that runs `adapter-engine extract`, checked as it would
    be before the queue is opened (a refused job writes nothing)."""
    from dataclasses import replace

    from adapters.registry import default_config_path
    from common.errors import UserInputError
    from engine.extract.options import JOB_KIND
    from engine.extract.run import check

    given = [flag for flag in ("level", "preset", "sweep") if getattr(args, flag)]
    if given:
        raise UserInputError(f"--extract queues an extraction, not a training; drop --{given[0]}")
    options = parse_options(args.extract)
    if options.register and not options.config:  # the worker may run elsewhere: pin the file to write
        options = replace(options, config=args.config or str(default_config_path()))
    options = options.absolute()
    check(options)
    with open_queue() as q:
        busy = [job.id for job in q.jobs() if job.state in ("queued", "running")
                and job.settings.get("kind") == JOB_KIND and job.settings.get("options", {}).get("out") == options.out]
        if busy:
            raise UserInputError(f"job {busy[0]} already extracts into {options.out}; wait for it or cancel it")
        (job_id,) = q.add_many([(JOB_KIND, {"kind": JOB_KIND, "options": options.as_dict()})], front=args.front,
                               dataset=options.out)
        job = q.get(job_id)
    if args.json:
        print(json.dumps([job.as_dict()], indent=2, default=str))
        return 0
    print(f"queued job {job.id}: extract {options.drafter} + {options.verifier} into {options.out} at position "
          f"{job.position}")
    print("start a worker with `adapter-engine queue worker` (or --detach) if none is running")
    return 0
