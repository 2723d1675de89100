"""`adapter-engine synth`: write the synthetic demo dataset (chunked train + val)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from_defaults = "(default %(default)s)"
    p = sub.add_parser("synth", help="generate a synthetic dataset (the demo data)",
                       description="Write OUT/train and OUT/val in the chunked format. "
                                   "`adapter-engine synth runs/datasets/demo` creates the `demo` dataset.")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--samples", type=int, default=2048, help=f"training samples {from_defaults}")
    p.add_argument("--val_samples", type=int, default=512, help=f"validation samples {from_defaults}")
    p.add_argument("--hidden_dim", type=int, default=256, help=f"hidden size (the verifier's) {from_defaults}")
    p.add_argument("--drafter_dim", type=int, default=None,
                   help="the drafter's hidden size, when it differs from the verifier's (default: the same)")
    p.add_argument("--max_seq", type=int, default=32, help=f"padded sequence length {from_defaults}")
    p.add_argument("--chunk_size", type=int, default=512, help=f"samples per chunk {from_defaults}")
    p.add_argument("--seed", type=int, default=0, help=f"generator seed {from_defaults}")
    p.add_argument("--lm_head", action="store_true", help="also write OUT/lm_head.pt (token metrics)")
    p.add_argument("--force", action="store_true", help="overwrite an existing dataset")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from common.text import widths_text
    from engine.data.synth import SynthConfig, synthesize

    cfg = SynthConfig(samples=args.samples, val_samples=args.val_samples, hidden_dim=args.hidden_dim,
                      drafter_dim=args.drafter_dim if args.drafter_dim is not None else args.hidden_dim,
                      max_seq=args.max_seq, chunk_size=args.chunk_size, seed=args.seed,
                      min_seq=min(4, args.max_seq))
    out = synthesize(Path(args.out), cfg, lm_head=args.lm_head, force=args.force,
                     progress=lambda line: print(line, flush=True))
    print(f"wrote {out}/train ({cfg.samples} samples) and {out}/val ({cfg.val_samples} samples), "
          f"hidden {widths_text(cfg.drafter_dim, cfg.hidden_dim)}")
    return 0
