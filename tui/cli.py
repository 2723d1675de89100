"""`adapter-tui [--runs DIR] [--config adapters.toml] [--poll] [--bell]`."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adapter-tui", description="Queue adapter trainings and watch them live. "
                                "Training runs in a detached worker: quitting never stops it.")
    p.add_argument("--runs", help="runs directory to watch and queue into (default: $ADAPTER_RUNS, else runs/ "
                   "beside the nearest adapters.toml from here up, else ./runs)")
    p.add_argument("--config", default=None, help="adapters.toml (default: $ADAPTER_TUI_CONFIG, ./adapters.toml)")
    p.add_argument("--poll", action="store_true", help="poll the file system (network file systems, where "
                   "inotify sees nothing)")
    p.add_argument("--bell", action="store_true", help="ring the terminal bell when a run finishes or fails")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from common.errors import ConfigError
    from adapters.registry import load_registry

    try:  # a broken config is a usage error: one line and exit 2 before the screen is taken
        load_registry(args.config)
    except ConfigError as exc:
        print(f"adapter-tui: error: {exc}", file=sys.stderr)
        return 2
    from tui.app import make_app

    make_app(args.runs, args.config, args.poll, bell=args.bell).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
