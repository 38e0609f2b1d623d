"""Batches for training loops, from an endless iterable dataset."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch


def batch_stream(stream: torch.utils.data.IterableDataset, workers: int, prefetch: int = 2) -> Iterator[Any]:
    """An iterator over ``stream``'s batches (the dataset batches itself), read by ``workers``
    background processes (0: in this process), each keeping ``prefetch`` batches ready."""
    return iter(
        torch.utils.data.DataLoader(
            stream,
            batch_size=None,
            num_workers=workers,
            prefetch_factor=prefetch if workers else None,
            persistent_workers=bool(workers),
        )
    )
