"""The headless engine: data pipeline, trainer, metrics, run directories, queue, CLI, bench.

Importing this package is torch-free; the modules that train import torch themselves, so the
TUI can use the run-directory and queue modules without paying for torch.
"""
