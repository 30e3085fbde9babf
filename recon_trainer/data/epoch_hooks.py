"""The per-epoch hook of the data: how a curriculum or a per-epoch reshuffle reaches the datasets.

At the start of every training epoch (also the first epoch after a resume) the trainer calls
`start_epoch(train_loader, epoch, max_epochs)`. Every object of the loader that defines
`on_epoch_start(epoch: int, max_epochs: int)` (its batch sampler, its sampler, its dataset, and
the children of a dataset that lists them in `children`) is called once, before the epoch's
first batch is drawn. Hooks must be pure functions of (epoch, max_epochs), so a resumed run
sees the same state as an uninterrupted one.

Workers of a DataLoader receive a copy of the dataset when the epoch's iterator starts (after
this call), so the change reaches them; `persistent_workers=True` would keep stale copies.
"""
from __future__ import annotations

from typing import Any, List


def epoch_aware_parts(loader: Any) -> List[Any]:
    """The distinct objects of `loader` that define `on_epoch_start` (batch sampler, sampler,
    dataset and, recursively, its `children`), each once, in that order."""
    found: List[Any] = []
    seen = set()

    def visit(obj: Any) -> None:
        if obj is None or id(obj) in seen:
            return
        seen.add(id(obj))
        if callable(getattr(obj, "on_epoch_start", None)):
            found.append(obj)
        for child in getattr(obj, "children", None) or ():
            visit(child)

    for part in ("batch_sampler", "sampler", "dataset"):
        visit(getattr(loader, part, None))
    inner = getattr(loader, "base_dataloader", None)  # accelerate's DataLoaderShard wraps the loader
    if inner is not None and inner is not loader:
        for part in ("batch_sampler", "sampler", "dataset"):
            visit(getattr(inner, part, None))
    return found


def start_epoch(loader: Any, epoch: int, max_epochs: int) -> None:
    """Call `on_epoch_start(epoch, max_epochs)` on every epoch-aware part of `loader`."""
    for part in epoch_aware_parts(loader):
        part.on_epoch_start(epoch, max_epochs)
