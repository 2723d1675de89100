"""`adapter-engine data inspect`: describe and verify a dataset."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="dataset tools (inspect)")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    inspect = data_sub.add_parser("inspect", help="describe a dataset; --deep verifies every chunk")
    inspect.add_argument("path", metavar="PATH")
    inspect.add_argument("--deep", action="store_true", help="read every chunk: NaN/Inf, shapes, lengths")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(func=run_inspect)


def run_inspect(args: argparse.Namespace) -> int:
    from engine.data.inspect import inspect_dataset

    info = inspect_dataset(args.path, deep=args.deep)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    lens = info["seq_len"]
    print(f"{info['path']}: {info['format']}, {info['samples']} samples in {info['chunks']} chunk(s), "
          f"hidden {info['hidden_dim']}, padded to {info['padded_len']}, {info['dtype']}, "
          f"{info['bytes_on_disk'] / 1e6:.1f} MB on disk")
    print(f"sequence length: min {lens['min']}, median {lens['median']:g}, mean {lens['mean']:g}, max {lens['max']}; "
          f"{info['tokens']} tokens; checks: {info['checked']} ok")
    return 0
