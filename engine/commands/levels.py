"""`adapter-engine levels`: the levels of adapters.toml with their parameter counts."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("levels", help="list adapter levels and parameter counts",
                       description="List the levels of adapters.toml with parameter counts "
                                   "(counted on the meta device: instant, no memory).")
    p.add_argument("--hidden_dim", type=int, default=4096,
                   help="the verifier's hidden size to count at (default 4096)")
    p.add_argument("--drafter_dim", type=int, default=None,
                   help="the drafter's hidden size, where it differs (default: --hidden_dim)")
    p.add_argument("--config", default=None, help="adapters.toml to read (default: ./adapters.toml)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=run)


def level_rows(config: str | None, hidden_dim: int, drafter_dim: int | None = None) -> list[dict]:
    from adapters.registry import count_parameters, load_registry
    from adapters.zoo import adapter_class

    registry = load_registry(config)
    return [
        {
            "key": spec.key,
            "name": spec.name,
            "class": spec.class_name,
            "params": count_parameters(spec, hidden_dim, drafter_dim=drafter_dim),
            "consumes": spec.consumes,
            "predicts_next": adapter_class(spec.class_name).predicts_next,
            "description": spec.description,
            "hidden_dim": hidden_dim,
            "drafter_dim": drafter_dim or hidden_dim,
            "train": spec.train,
        }
        for spec in registry.levels.values()
    ]


def run(args: argparse.Namespace) -> int:
    from common.errors import UserInputError

    from adapters.registry import MAX_HIDDEN_DIM

    for flag in ("hidden_dim", "drafter_dim"):
        value = getattr(args, flag)
        if value is not None and not 1 <= value <= MAX_HIDDEN_DIM:
            raise UserInputError(f"--{flag} must be between 1 and {MAX_HIDDEN_DIM:,}, got {value}")
    rows = level_rows(args.config, args.hidden_dim, args.drafter_dim)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    from common.text import widths_text

    table = Table(title=f"Adapter levels at hidden size {widths_text(args.drafter_dim, args.hidden_dim)}")
    for column in ("key", "name", "params", "consumes", "epochs", "description"):
        table.add_column(column, justify="right" if column in ("params", "epochs") else "left")
    for row in rows:
        table.add_row(row["key"], row["name"], f"{row['params']:,}", row["consumes"],
                      str(row["train"]["num_epochs"]), row["description"])
    Console().print(table)
    return 0
