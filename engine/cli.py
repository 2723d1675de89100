"""`adapter-engine`: the headless engine's command line."""

from __future__ import annotations

import argparse
import sys

from common.errors import UserInputError
from engine.commands import bench, checkpoint, data, evaluate, extract, levels, queue, runs, speculate, synth, train

SUBCOMMANDS = (levels, data, synth, extract, train, evaluate, speculate, checkpoint, runs, bench, queue)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adapter-engine",
        description="Train, queue, inspect and evaluate hidden-state adapters (headless).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as given, for config.json and for re-launching under torchrun
    try:
        return int(args.func(args) or 0)
    except UserInputError as exc:
        print(f"adapter-engine {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `adapter-engine runs | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
