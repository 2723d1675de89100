"""The adapter zoo: every level (L1-L5, L5F, B1), its losses and its checkpoints.

Importing this package is cheap and torch-free; the modules that define networks
(`adapters.base`, `adapters.bottleneck`, `adapters.attention`, `adapters.losses`,
`adapters.checkpoint`) import torch themselves. `adapters.registry` reads adapters.toml
without torch, so the TUI can use it.
"""
