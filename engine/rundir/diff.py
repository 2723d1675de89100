"""How two or more runs differ: their config.json (settings and lineage: code version, data
fingerprints, host) flattened to dotted keys, and the keys whose values are not all equal.
`adapter-engine runs --diff` prints it; the app's details pane shows it for marked runs."""

from __future__ import annotations

from typing import Any

# Keys that differ between any two runs and say nothing about how they differ: when a run
# happened and how it came out (its results are the leaderboard's).
NOISE = {"timestamp", "argv", "best_val_loss", "best_epoch", "epochs_done", "state", "finished_at",
         "data.train_samples", "data.val_samples"}


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """{'training.epochs': 3, 'lineage.code.0.commit': '…', ...} from nested dicts and lists of dicts."""
    if isinstance(config, list) and config and all(isinstance(v, dict) for v in config):
        config = {str(i): v for i, v in enumerate(config)}
    if not isinstance(config, dict):
        return {prefix: config} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if (isinstance(value, dict) and value) or (isinstance(value, list) and value
                                                   and all(isinstance(v, dict) for v in value)):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def config_diff(configs: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """(key, its value in each config) for every flattened key whose values are not all equal."""
    flat = [flatten(c) for c in configs]
    rows = []
    for key in sorted(set().union(*flat)):
        if key in NOISE or key.startswith("versions."):
            continue
        values = [f.get(key, "—") for f in flat]
        if any(v != values[0] for v in values[1:]):
            rows.append((key, values))
    return rows
