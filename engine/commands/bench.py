"""`adapter-engine bench`: performance as ratios against seed-style baselines, in one run."""

from __future__ import annotations

import argparse
import json


THREADS_HELP = ("torch threads for both sides (default 1: on a shared machine, OpenMP spin-waits make "
                "multi-threaded timings swing by 10x)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure ours against the seed-style baseline (ratios)")
    bench_sub = p.add_subparsers(dest="bench_command", required=True, metavar="BENCH")
    loader = bench_sub.add_parser("loader", help="train-loader samples/s vs a seed-style loader")
    loader.add_argument("path", metavar="PATH", help="chunked dataset (e.g. runs/datasets/demo/train)")
    loader.add_argument("--batch_size", type=int, default=64)
    loader.add_argument("--repeats", type=int, default=5, help="passes per loader; the median is reported")
    loader.add_argument("--json", action="store_true")
    loader.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    loader.set_defaults(func=run_loader)
    metrics = bench_sub.add_parser("metrics", help="vectorised validation metrics vs a per-token loop")
    metrics.add_argument("--batch", type=int, default=32)
    metrics.add_argument("--seq", type=int, default=48)
    metrics.add_argument("--hidden_dim", type=int, default=256)
    metrics.add_argument("--batches", type=int, default=8)
    metrics.add_argument("--repeats", type=int, default=5)
    metrics.add_argument("--json", action="store_true")
    metrics.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    metrics.set_defaults(func=run_metrics)


def _threads(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)


def _report(result: dict, as_json: bool) -> int:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        unit = result["unit"]
        print(f"{result['bench']}: ours {result['ours']:,.0f} {unit}, seed-style {result['baseline']:,.0f} {unit}, "
              f"ratio {result['ratio']:.2f}x")
    return 0


def run_loader(args: argparse.Namespace) -> int:
    from adapters.errors import UserInputError
    from engine.bench.loader import bench_loader

    if args.batch_size < 1 or args.repeats < 1:
        raise UserInputError("--batch_size and --repeats must be >= 1")
    _threads(args)
    return _report(bench_loader(args.path, args.batch_size, args.repeats), args.json)


def run_metrics(args: argparse.Namespace) -> int:
    from engine.bench.metrics import bench_metrics

    _threads(args)

    return _report(bench_metrics(args.batch, args.seq, args.hidden_dim, args.batches, args.repeats), args.json)
