"""`adapter-engine checkpoint PATH`: what a checkpoint holds (ours or the reference's)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("checkpoint", help="describe a checkpoint (ours or the reference's)",
                       description="Level, class, sizes, parameters, epoch and saved metrics of a checkpoint: "
                                   "an adapter-tui one, or one the reference implementation saved "
                                   "(model_state_dict + config). A run directory means its best_model.pt.")
    p.add_argument("target", metavar="CHECKPOINT|RUN_DIR")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def describe(target: str) -> dict:
    from pathlib import Path

    from adapters.checkpoint import load_adapter, widths
    from engine.rundir.layout import checkpoint_of

    path = checkpoint_of(Path(target))
    model, payload = load_adapter(path)
    drafter_dim, hidden_dim = widths(payload)
    return {"path": str(path), "format": payload.get("format"), "level": payload["level"], "class": payload["class"],
            "drafter_dim": drafter_dim, "hidden_dim": hidden_dim,
            "init_kwargs": payload["init_kwargs"], "params": sum(p.numel() for p in model.parameters()),
            "epoch": payload.get("epoch"), "metrics": payload.get("metrics") or {},
            "val_loss": payload.get("val_loss")}


def run(args: argparse.Namespace) -> int:
    info = describe(args.target)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    source = "the reference's" if info["format"] == "reference" else "adapter-tui"
    print(f"{info['path']}: {source} checkpoint of {info['level']} ({info['class']}), {info['params']:,} parameters"
          + (f", epoch {info['epoch']}" if info["epoch"] is not None else ""))
    print(f"widths: drafter {info['drafter_dim']} → verifier {info['hidden_dim']}"
          + ("" if info["drafter_dim"] != info["hidden_dim"] else " (equal)"))
    print("arguments: " + ", ".join(f"{k}={v}" for k, v in info["init_kwargs"].items()))
    if info["metrics"]:
        print("saved metrics: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in info["metrics"].items()))
    return 0
