"""`adapter-engine data inspect`: describe and verify a dataset."""

from __future__ import annotations

import argparse
import json

from common.text import plural, widths_text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="dataset tools (inspect, pack)")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    inspect = data_sub.add_parser("inspect", help="describe a dataset; --deep verifies every chunk")
    inspect.add_argument("path", metavar="PATH")
    inspect.add_argument("--deep", action="store_true", help="read every chunk: NaN/Inf, shapes, lengths")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(func=run_inspect)
    pack = data_sub.add_parser("pack", help="rewrite a dataset without padding, memory-mappable (compact)")
    pack.add_argument("src", metavar="SRC")
    pack.add_argument("dst", metavar="DST")
    pack.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16", help="stored precision (bf16)")
    pack.add_argument("--force", action="store_true", help="overwrite DST")
    pack.add_argument("--json", action="store_true", help="print JSON")
    pack.set_defaults(func=run_pack)


def run_inspect(args: argparse.Namespace) -> int:
    from engine.data.inspect import inspect_dataset

    info = inspect_dataset(args.path, deep=args.deep)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    lens = info["seq_len"]
    print(f"{info['path']}: {info['format']}, {plural(info['samples'], 'sample')} in {plural(info['chunks'], 'chunk')}, "
          f"hidden {widths_text(info['drafter_dim'], info['hidden_dim'])}, padded to {info['padded_len']}, {info['dtype']}, "
          f"{info['bytes_on_disk'] / 1e6:.1f} MB on disk")
    print(f"sequence length: min {lens['min']}, median {lens['median']:g}, mean {lens['mean']:g}, max {lens['max']}; "
          f"{info['tokens']} tokens; checks: {info['checked']} ok")
    return 0


def run_pack(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.data.pack import pack

    result = pack(Path(args.src), Path(args.dst), args.dtype, args.force,
                  progress=(lambda line: None) if args.json else (lambda line: print(line, flush=True)))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"packed {result['samples']} samples ({result['tokens']} tokens) into {result['packed']} as "
              f"{result['dtype']}: {result['packed_bytes'] / 1e6:.1f} MB, {result['size_ratio']:.2f}x the "
              f"{result['source_bytes'] / 1e6:.1f} MB source")
    return 0
