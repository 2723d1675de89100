"""Data pipeline: dataset readers, chunked loaders with background prefetch, inspection,
the synthetic demo generator and the compact packed format."""

from engine.data.dataset import open_dataset
from engine.data.formats import ChunkRef, Dataset
from engine.data.inspect import inspect_dataset

__all__ = ["ChunkRef", "Dataset", "open_dataset", "inspect_dataset"]
