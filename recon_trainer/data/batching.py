"""The method owns its batch: how the items a dataset returns become what a model takes.

A data source's loaders call `batch_builder.item(x)` on every dataset item and
`batch_builder.collate(items)` on the items of a batch, both in the DataLoader worker
(`BatchCollate`). Datasets return records (data/records.py) or, the older ones, FrameData; a
method that wants its own batch registers a BatchBuilderBase in its plugin folder and names it in
the data source's `batch_builder_class_type`.

Built in:
- `FrameDataBatch` (the default): FrameData items pass through unchanged and are collated with
  frame_data.collate, exactly as before; a ViewRecord becomes one FrameData frame
  (`view_to_frame_data`); a SequenceRecord becomes its N frames, and a batch of B sequences is
  one FrameData of B * N frames in order (sequence after sequence; `sequence_name` per frame tells
  them apart), the flat frame batch Implicitron-style models take.
- `RecordBatch`: records stacked generically (records.stack_records): B ViewRecords give a
  ViewRecord of (B, ...) tensors, B SequenceRecords of N views a ViewRecord of (B, N, ...)
  tensors, B VoxelRecords a VoxelRecord of (B, X, Y, Z) labels; extras are stacked key by key.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, List, Sequence, TypeVar

import torch

from recon_trainer.config import ReplaceableBase, registry
from recon_trainer.data.frame_data import FrameData, collate, view_frame_data
from recon_trainer.data.records import SequenceRecord, ViewRecord, stack_records

B = TypeVar("B")


def map_tensor_fields(batch: B, fn: Callable[[torch.Tensor], torch.Tensor], **others: Any) -> B:
    """A copy of the dataclass `batch` with `fn` applied to every field holding a tensor and the
    fields named in `others` replaced (a method batch's `to` / `select`)."""
    tensors = {f.name: fn(getattr(batch, f.name)) for f in dataclasses.fields(batch)
               if isinstance(getattr(batch, f.name), torch.Tensor)}
    return dataclasses.replace(batch, **tensors, **others)


class BatchBuilderBase(ReplaceableBase):
    """Turns dataset items into a method's batch: `item` per item, `collate` per batch."""

    def item(self, record: Any) -> Any:
        """A dataset item (a record, or a FrameData) as the method's item; the default: unchanged."""
        return record

    @abc.abstractmethod
    def collate(self, items: List[Any]) -> Any:
        """The items of one batch (outputs of `item`) as one batch."""

    def __call__(self, items: List[Any]) -> Any:
        """The DataLoader's collate_fn: `collate([item(x) for x in items])`."""
        return self.collate([self.item(x) for x in items])


class BatchCollate:
    """A picklable collate_fn calling a builder (DataLoader workers may be spawned)."""

    def __init__(self, builder: BatchBuilderBase) -> None:
        self.builder = builder

    def __call__(self, items: List[Any]) -> Any:
        return self.builder(items)


def view_to_frame_data(view: ViewRecord) -> FrameData:
    """One ViewRecord as a single FrameData frame (frame_data.view_frame_data), with meta
    {"dataset", "label_type", "depth_kind", "depth_infinite" (1, H, W) bool when it has depth,
    "extras" when it has any}: +inf sky and NaN become 0 in FrameData's depth, so the sky mask
    travels in meta."""
    meta = {"dataset": view.dataset, "label_type": view.label_type, "depth_kind": view.depth_kind}
    if view.depth is not None:
        meta["depth_infinite"] = view.depth_infinite()[None]
    if view.extras:
        meta["extras"] = view.extras
    return view_frame_data(view, meta=meta)


@registry.register
class FrameDataBatch(BatchBuilderBase):
    """FrameData batches (module doc): FrameData items unchanged, records converted to frames."""

    def item(self, record: Any) -> Any:
        if isinstance(record, FrameData):
            return record
        if isinstance(record, ViewRecord):
            return view_to_frame_data(record)
        if isinstance(record, SequenceRecord):
            return [view_to_frame_data(view) for view in record.views]
        raise TypeError(f"FrameDataBatch: cannot make FrameData of a {type(record).__name__} (ViewRecord, "
                        f"SequenceRecord or FrameData expected; choose another batch_builder for it)")

    def collate(self, items: List[Any]) -> FrameData:
        frames: List[FrameData] = []
        for item in items:
            frames.extend(item if isinstance(item, list) else [item])
        return collate(frames)


@registry.register
class RecordBatch(BatchBuilderBase):
    """Records stacked generically (module doc): a record of the items' class with (B, ...) tensors."""

    def item(self, record: Any) -> Any:
        if isinstance(record, FrameData):
            raise TypeError("RecordBatch: the dataset returned FrameData, not records; use FrameDataBatch")
        return record

    def collate(self, items: Sequence[Any]) -> Any:
        return stack_records(list(items))
