"""`adapter-engine eval`: acceptance-first evaluation of a run or checkpoint; writes eval.json."""

from __future__ import annotations

import argparse
import json
import math

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
    p.add_argument("--draft_cost", type=float, help="draft step cost / verifier step cost (default: [eval])")
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

    from common.errors import UserInputError
    from adapters.registry import load_registry
    from engine.evaluate import describe, eval_path_for
    from common.fileio import unwritable_dir, write_json
    from engine.run_eval import evaluate_target

    registry = load_registry(args.config)
    defaults = registry.eval
    thresholds = defaults["thresholds"]
    if args.thresholds:
        try:
            thresholds = [float(t) for t in args.thresholds.split(",")]
        except ValueError:
            raise UserInputError(f"--thresholds must be comma-separated numbers, got {args.thresholds!r}") from None
        if not all(-1 < t < 1 for t in thresholds):
            raise UserInputError("--thresholds must lie between -1 and 1")
    gamma = args.gamma if args.gamma is not None else defaults["gamma"]
    draft_cost = args.draft_cost if args.draft_cost is not None else defaults["draft_cost"]
    if gamma < 1 or not 0 <= draft_cost < math.inf:
        raise UserInputError("--gamma must be >= 1 and --draft_cost a finite number >= 0")
    timing = {name: getattr(args, name) for name in seed.TIMING_MS if getattr(args, name) is not None}
    if any(not 0 <= value < math.inf for value in timing.values()):
        raise UserInputError("the timing flags (--egpt_prefill_ms ...) must be finite numbers >= 0")
    target = Path(args.target)
    problem = unwritable_dir(eval_path_for(target).parent) if target.exists() else None
    if problem:
        raise UserInputError(f"cannot write eval.json: {problem}")
    result = evaluate_target(target, data=args.data, lm_head=args.lm_head, thresholds=thresholds,
                             gamma=gamma, draft_cost=draft_cost, device=args.device, timing=timing or None)
    write_json(eval_path_for(target), result)
    print(json.dumps(result, indent=2) if args.json else describe(result))
    return 0
