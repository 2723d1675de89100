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
    step = bench_sub.add_parser("step", help="a whole epoch per level vs a seed-style fp32 loop")
    step.add_argument("--levels", default="L1,L4", help="comma-separated level keys (default L1,L4)")
    step.add_argument("--hidden_dim", type=int, default=1024)
    step.add_argument("--samples", type=int, default=256)
    step.add_argument("--val_samples", type=int, default=128)
    step.add_argument("--max_seq", type=int, default=32)
    step.add_argument("--batch_size", type=int, default=64)
    step.add_argument("--repeats", type=int, default=3)
    step.add_argument("--config", help="adapters.toml to read")
    step.add_argument("--device", default="cpu", help="cpu or cuda[:N] (ours then runs bf16 + fused AdamW)")
    step.add_argument("--peak_tflops", type=float, help="dense bf16 peak for MFU (default: known GPUs; none on CPU)")
    step.add_argument("--json", action="store_true")
    step.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    step.set_defaults(func=run_step)
    tui = bench_sub.add_parser("tui", help="first paint, watch-to-plot latency, leaderboard load of N runs")
    tui.add_argument("--runs", type=int, default=1000, help="run directories to load (default 1000)")
    tui.add_argument("--json", action="store_true")
    tui.set_defaults(func=run_tui)
    runs = bench_sub.add_parser("runs", help="`runs --json` over N runs: the run index (cold, warm) against "
                                             "reading every file")
    runs.add_argument("--runs", type=int, default=10_000, help="synthetic runs to list (default 10,000)")
    runs.add_argument("--repeats", type=int, default=3, help="listings of each kind; medians are reported")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(func=run_runs)


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
    from common.errors import UserInputError
    from engine.bench.loader import bench_loader

    if args.batch_size < 1 or args.repeats < 1:
        raise UserInputError("--batch_size and --repeats must be >= 1")
    _threads(args)
    return _report(bench_loader(args.path, args.batch_size, args.repeats), args.json)


def run_metrics(args: argparse.Namespace) -> int:
    from engine.bench.metrics import bench_metrics

    _threads(args)

    return _report(bench_metrics(args.batch, args.seq, args.hidden_dim, args.batches, args.repeats), args.json)


def run_step(args: argparse.Namespace) -> int:
    from common.errors import UserInputError
    from engine.bench.step import bench_step

    _threads(args)
    levels = [k for k in args.levels.split(",") if k]
    if not levels or min(args.hidden_dim, args.samples, args.val_samples, args.max_seq, args.batch_size, args.repeats) < 1:
        raise UserInputError("--levels must name at least one level and every size must be >= 1")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserInputError(f"--device {args.device}: no CUDA device here; use --device cpu")
    result = bench_step(levels, args.hidden_dim, args.samples, args.val_samples, args.max_seq, args.batch_size,
                        args.repeats, args.config, args.device, args.peak_tflops)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for row in result["levels"]:
        mfu = f", MFU ours {row['ours_mfu']:.1%} vs {row['baseline_mfu']:.1%}" if "ours_mfu" in row else ""
        print(f"step {row['level']} ({row['params']:,} params, hidden {result['hidden_dim']}, {result['device']}): "
              f"ours {row['ours']:,.0f}, seed-style {row['baseline']:,.0f} train tokens/s per epoch, "
              f"ratio {row['ratio']:.2f}x{mfu}")
    return 0


def run_runs(args: argparse.Namespace) -> int:
    from common.errors import UserInputError
    from engine.bench.runs import bench_runs

    if args.runs < 1 or args.repeats < 1:
        raise UserInputError("--runs and --repeats must be >= 1")
    result = bench_runs(args.runs, args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"runs --json over {result['runs']:,} runs (median of {result['repeats']}): cold {result['cold_s']:.2f} s, "
              f"warm {result['warm_s']:.2f} s, every file read (--rescan) {result['rescan_s']:.2f} s: "
              f"{result['rescan_over_warm']:.2f}x; rows equal: {result['equal']}")
    return 0


def run_tui(args: argparse.Namespace) -> int:
    """The TUI measures itself in its own process (it must never share one with torch)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "tui.bench", "--json", "--runs", str(args.runs)], capture_output=True,
                         text=True, timeout=1800)
    if out.returncode != 0:
        print(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "tui bench failed", file=sys.stderr)
        return 1
    result = json.loads(out.stdout)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    return 0
