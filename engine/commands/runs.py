"""`adapter-engine runs`: the leaderboard of every run directory (ours and the seed's)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from engine.rundir.summary import SORT_KEYS

    p = sub.add_parser("runs", help="leaderboard of every run under a runs directory")
    p.add_argument("dir", nargs="?", default="runs", metavar="DIR", help="runs directory (default: runs)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON rows")
    fmt.add_argument("--md", action="store_true", help="print a Markdown table like the seed's Results table")
    p.add_argument("--sort", default="best_val_loss", choices=SORT_KEYS, metavar="KEY",
                   help=f"sort column, best first (one of: {', '.join(SORT_KEYS)}; default best_val_loss)")
    p.set_defaults(func=run)


REFERENCE_NOTE = ("† the reference's figures, from its acceptance_metrics.json: E acc@γ is its sd_consecutive_gamma5, "
                  "speedup its speedup_e2e (docs/SEED.md)")


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _params(n: int | None) -> str:
    return "–" if n is None else (f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from common.errors import UserInputError
    from engine.rundir.summary import load_runs, sort_runs

    root = Path(args.dir)
    if not root.is_dir():
        raise UserInputError(f"runs directory {root} does not exist; train something or pass DIR")
    rows = sort_runs(load_runs(root), args.sort)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return 0
    if args.md:
        print("| Level | Params | Val Loss | cos_sim | Accept@0.90 |")
        print("|-------|--------|----------|---------|-------------|")
        for r in rows:
            accept = "–" if r.accept_90 is None else f"{100 * r.accept_90:.1f}%"
            print(f"| {r.level} | {_params(r.params)} | {_fmt(r.best_val_loss, '.4f')} | {_fmt(r.cos_sim, '.3f')} | {accept} |")
        return 0
    from rich.console import Console
    from rich.table import Table

    reference = any(r.eval_source == "reference" for r in rows)
    table = Table(title=f"Runs in {root}", caption=REFERENCE_NOTE if reference else None)
    columns = ("run", "level", "params", "state", "epochs", "val loss", "cos", "acc@.90", "cons@.90",
               "E acc@γ", "speedup", "time")
    for name in columns:
        table.add_column(name, justify="left" if name in ("run", "level", "state") else "right")
    for r in rows:
        epochs = f"{r.epochs_done}/{r.num_epochs}" if r.num_epochs else str(r.epochs_done)
        state = r.state if not r.error else f"{r.state} ({r.error})"
        mark = "†" if r.eval_source == "reference" else ""
        table.add_row(r.run, r.level, _params(r.params), state, epochs, _fmt(r.best_val_loss, ".4f"),
                      _fmt(r.cos_sim, ".3f"), _fmt(r.accept_90, ".3f"), _fmt(r.consecutive_90, ".2f"),
                      _fmt(r.expected_tokens, ".2f") + mark, _fmt(r.speedup, ".2f") + mark, _duration(r.duration_s))
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    return 0
