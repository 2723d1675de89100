"""`adapter-engine eval`: acceptance-first evaluation of a run or checkpoint; writes eval.json."""

from __future__ import annotations

import argparse
import json

from adapters import seed


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="speculative-decoding metrics of a run or checkpoint (writes eval.json)",
                       description="Accept rates, accepted-prefix lengths, acceptance by position, "
                                   "E[min(L, γ)] and the estimated speedup (see README).")
    p.add_argument("target", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--data", help="validation data (default: the run's own validation data)")
    p.add_argument("--lm_head", help="LM head .pt [V, H] for token top-1/top-5 agreement")
    p.add_argument("--gamma", type=int, help="draft length for the speedup estimate (default: adapters.toml [eval])")
    p.add_argument("--thresholds", help="comma-separated cosine thresholds (default: adapters.toml [eval])")
    p.add_argument("--draft_cost", type=float, help="draft step cost / verifier step cost (default: measured by the "
                   "run's speculate.json, else [eval])")
    p.add_argument("--device", default="auto")
    timing = p.add_argument_group("the reference's speedup estimates (any of these turns them on; the rest take "
                                  "the reference's defaults, measured for EventGPT and Video-LLaVA)")
    for name, default in seed.TIMING_MS.items():
        timing.add_argument(f"--{name}", type=float, metavar="MS", help=f"(reference default {default:g})")
    p.add_argument("--config", help="adapters.toml to read")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from adapters.registry import load_registry
    from common.errors import UserInputError
    from engine.evaluate import EvalOptions, describe, evaluate_run

    thresholds = None
    if args.thresholds:
        try:
            thresholds = tuple(float(t) for t in args.thresholds.split(","))
        except ValueError:
            raise UserInputError(f"--thresholds must be comma-separated numbers, got {args.thresholds!r}") from None
    timing = {name: getattr(args, name) for name in seed.TIMING_MS if getattr(args, name) is not None}
    options = EvalOptions.from_registry(load_registry(args.config).eval, flags=True, thresholds=thresholds,
                                        gamma=args.gamma, draft_cost=args.draft_cost, timing=timing or None)
    result, _ = evaluate_run(Path(args.target), options, data=args.data, lm_head=args.lm_head, device=args.device,
                             calibrate=args.draft_cost is None)
    print(json.dumps(result, indent=2) if args.json else describe(result))
    return 0
