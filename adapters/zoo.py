"""Names of the built-in adapter classes, for adapters.toml `class = "..."` and checkpoints.

Kept as strings so reading the registry never imports torch.
"""

from __future__ import annotations

import importlib

CLASSES: dict[str, str] = {
    "BottleneckAdapter": "adapters.bottleneck",
    "MultiLayerBottleneckAdapter": "adapters.bottleneck",
    "WideBottleneckAdapter": "adapters.bottleneck",
    "AttentionAdapter": "adapters.attention",
    "EAGLEAdapter": "adapters.attention",
    "FusedEAGLEAdapter": "adapters.attention",
}


def adapter_class(name: str):
    """The class called `name`; KeyError lists the known names."""
    if name not in CLASSES:
        raise KeyError(f"unknown adapter class {name!r} (known: {', '.join(CLASSES)})")
    return getattr(importlib.import_module(CLASSES[name]), name)
