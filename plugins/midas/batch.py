"""MiDaS's batches: depth items whose dataset and evaluation protocol are typed fields.

The depth datasets (recon_trainer/data/depth/) return FrameData items whose meta holds the
dataset label and, for evaluation items, the metric, the depth cap and DIW's ordinal pairs.
`MidasDepthBatch` (the midas configs' batch_builder) reads those once, in the loader's worker,
into a DepthBatch: MidasModel and DepthEvaluator read its fields, never a meta dict.
"""
from __future__ import annotations

import dataclasses
from typing import Any, List, Optional, Sequence, Union

import torch

from recon_trainer.config import registry
from recon_trainer.data.batching import BatchBuilderBase, view_to_frame_data
from recon_trainer.data.frame_data import FrameData
from recon_trainer.data.records import ViewRecord


@dataclasses.dataclass
class DepthBatch:
    """B monocular depth items.

    image_rgb: (B, 3, H, W) in [0, 1].
    disparity_map: (B, 1, H, W) relative inverse depth (the training target), 0 where unknown.
    depth_map: (B, 1, H, W) metric depth of evaluation items of datasets that have it, 0 where unknown.
    depth_mask: (B, 1, H, W) 1 where the ground truth is valid.
    dataset: the B dataset labels (per-dataset resize and results); [] when unknown.
    eval_metric: the B evaluation metrics ("delta1.25", "absrel" or "whdr"; "" for training items).
    depth_cap: (B,) depths at or beyond the cap are invalid in evaluation; 0: no cap.
    ordinal_pairs: B tensors (P_i, 5) of (y_a, x_a, y_b, x_b, relation) for ordinal datasets, else None.
    image_path: the B image files ([] when unknown).
    """

    image_rgb: torch.Tensor
    disparity_map: Optional[torch.Tensor] = None
    depth_map: Optional[torch.Tensor] = None
    depth_mask: Optional[torch.Tensor] = None
    dataset: List[str] = dataclasses.field(default_factory=list)
    eval_metric: List[str] = dataclasses.field(default_factory=list)
    depth_cap: Optional[torch.Tensor] = None
    ordinal_pairs: Optional[List[Optional[torch.Tensor]]] = None
    image_path: List[str] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return self.image_rgb.shape[0]

    def to(self, device: Union[str, torch.device]) -> "DepthBatch":
        """A copy with every tensor on `device`."""

        def move(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return value.to(device)
            if isinstance(value, list):
                return [move(element) for element in value]
            return value

        return DepthBatch(**{f.name: move(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def without_ground_truth(self) -> "DepthBatch":
        """The batch a model predicts from in evaluation: no disparity, depth or mask."""
        return dataclasses.replace(self, disparity_map=None, depth_map=None, depth_mask=None)

    @classmethod
    def from_frames(cls, frames: Sequence[FrameData]) -> "DepthBatch":
        """Stack single depth-dataset frames (module doc); every frame must have the same fields."""

        def stacked(name: str) -> Optional[torch.Tensor]:
            values = [getattr(frame, name) for frame in frames]
            if all(value is None for value in values):
                return None
            if any(value is None for value in values):
                raise ValueError(f"DepthBatch: {name} is set on some items of the batch and missing on others")
            return torch.stack(values)

        metas = [frame.meta for frame in frames]
        pairs = [meta.get("ordinal_pairs") for meta in metas]
        return cls(
            image_rgb=stacked("image_rgb"),
            disparity_map=stacked("disparity_map"),
            depth_map=stacked("depth_map"),
            depth_mask=stacked("depth_mask"),
            dataset=[str(meta.get("dataset", "")) for meta in metas],
            eval_metric=[str(meta.get("eval_metric", "")) for meta in metas],
            depth_cap=torch.tensor([float(meta.get("depth_cap", 0.0)) for meta in metas]),
            ordinal_pairs=None if all(p is None for p in pairs) else pairs,
            image_path=[frame.image_path or "" for frame in frames],
        )


@registry.register
class MidasDepthBatch(BatchBuilderBase):
    """Depth items (FrameData of the depth datasets, or ViewRecords) as DepthBatches (module doc)."""

    def item(self, record: Any) -> FrameData:
        if isinstance(record, ViewRecord):
            return view_to_frame_data(record)
        if not isinstance(record, FrameData):
            raise TypeError(f"MidasDepthBatch: a {type(record).__name__} item; expected a depth dataset's FrameData "
                            "or a ViewRecord")
        return record

    def collate(self, items: List[FrameData]) -> DepthBatch:
        return DepthBatch.from_frames(items)
