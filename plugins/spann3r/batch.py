"""PointMapBatch: B sequences of T views as the DUSt3R and Spann3R networks and losses take them.

The datasets (recon_trainer/data/multiview) have already cropped and resized every view as DUSt3R
does; the builder stacks the SequenceRecords, scales the images to DUSt3R's [-1, 1] (ImgNorm) and
computes each view's ground-truth point map in world coordinates from its depth, intrinsics and
camera-to-world pose (valid where the depth is finite and > 0, as DUSt3R's valid_mask).
"""
from __future__ import annotations

import dataclasses
from typing import Any, List, Sequence

import torch

from recon_trainer.config import registry
from recon_trainer.data.batching import BatchBuilderBase, map_tensor_fields
from recon_trainer.data.records import SequenceRecord, ViewRecord


@dataclasses.dataclass
class PointMapBatch:
    """B sequences of T views (H x W pixels).

    images: (B, T, 3, H, W) in [-1, 1] (the networks' input). rgb: (B, T, 3, H, W) in [0, 1].
    true_shape: (B, T, 2) int64 (H, W) of every view (DUSt3R's true_shape); a portrait view is
    stored transposed to landscape, as DUSt3R's datasets do (landscape_view), its true_shape not.
    depth: (B, T, H, W) metres, 0 unknown. intrinsics: (B, T, 3, 3) pixels, centres at + 0.5.
    camera_to_world: (B, T, 4, 4) OpenCV. points: (B, T, H, W, 3) world coordinates (metres),
    0 where not valid. valid: (B, T, H, W) bool. dataset, sequence: B strings.
    """

    images: torch.Tensor
    rgb: torch.Tensor
    true_shape: torch.Tensor
    depth: torch.Tensor
    intrinsics: torch.Tensor
    camera_to_world: torch.Tensor
    points: torch.Tensor
    valid: torch.Tensor
    dataset: List[str]
    sequence: List[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_frames(self) -> int:
        """T."""
        return int(self.images.shape[1])

    def to(self, device: Any) -> "PointMapBatch":
        """The batch with every tensor on `device`."""
        return map_tensor_fields(self, lambda x: x.to(device))

    def select(self, indices: Sequence[int]) -> "PointMapBatch":
        """The sequences at `indices`."""
        kept = [int(i) for i in indices]
        return map_tensor_fields(self, lambda x: x[kept], dataset=[self.dataset[i] for i in kept],
                         sequence=[self.sequence[i] for i in kept])

    def frames(self, indices: Sequence[int]) -> "PointMapBatch":
        """The frames at `indices` of every sequence."""
        kept = [int(i) for i in indices]
        return map_tensor_fields(self, lambda x: x[:, kept])


@dataclasses.dataclass
class _View:
    """One view's tensors before stacking (landscape), with its true (H, W)."""

    rgb: torch.Tensor
    depth: torch.Tensor
    intrinsics: torch.Tensor
    camera_to_world: torch.Tensor
    points: torch.Tensor
    valid: torch.Tensor
    true_shape: torch.Tensor


def landscape_view(view: ViewRecord) -> _View:
    """A view's tensors with its world points and valid mask computed, a portrait view transposed
    to landscape as DUSt3R's datasets do (pixels swapped, K's rows x and y swapped) while
    true_shape keeps its own (H, W): a ManyAR_PatchEmbed network's patch embedding and heads transpose back
    (the models refuse portrait views for other networks: model.check_portraits)."""
    for name in ("depth", "intrinsics", "camera_to_world"):
        if getattr(view, name) is None:
            raise ValueError(f"PointMapBatchBuilder: a view of {view.sequence!r} ({view.dataset}) has no {name}; "
                             "the DUSt3R and Spann3R losses need depth, intrinsics and poses")
    valid = view.depth_valid()
    points = torch.where(valid[..., None], view.points_world(), torch.zeros(()))
    depth = torch.where(valid, view.depth, torch.zeros(()))
    h, w = view.image_size_hw
    out = _View(view.image.float(), depth.float(), view.intrinsics.float(), view.camera_to_world.float(),
                points.float(), valid, torch.tensor([h, w], dtype=torch.int64))
    if w < h:
        out.rgb, out.depth, out.valid = out.rgb.transpose(1, 2), out.depth.T, out.valid.T
        out.points, out.intrinsics = out.points.transpose(0, 1), out.intrinsics[[1, 0, 2]]
    return out


@registry.register
class PointMapBatchBuilder(BatchBuilderBase):
    """SequenceRecords (every view of a batch at one size) to a PointMapBatch (module doc)."""

    def item(self, record: Any) -> Any:
        if not isinstance(record, SequenceRecord):
            raise TypeError(f"PointMapBatchBuilder: a dataset item is a {type(record).__name__}; it takes "
                            "SequenceRecords (a multi-view dataset such as Scannet(...) or Co3d(...))")
        return record

    def collate(self, items: List[SequenceRecord]) -> PointMapBatch:
        counts = {len(item) for item in items}
        if len(counts) > 1:
            raise ValueError(f"PointMapBatchBuilder: the sequences of one batch have {sorted(counts)} views; give "
                             "every dataset the same num_frames (or use batch_size 1 for full videos)")
        views = [[landscape_view(view) for view in item.views] for item in items]
        sizes = {tuple(view.rgb.shape) for item in views for view in item}
        if len(sizes) > 1:
            raise ValueError(f"PointMapBatchBuilder: the views of one batch have different sizes {sorted(sizes)}; "
                             "give every dataset of the expression the same resolution")

        def stacked(name: str) -> torch.Tensor:
            return torch.stack([torch.stack([getattr(view, name) for view in item]) for item in views])

        rgb = stacked("rgb")
        return PointMapBatch(images=rgb * 2.0 - 1.0, rgb=rgb, true_shape=stacked("true_shape"), depth=stacked("depth"),
                             intrinsics=stacked("intrinsics"), camera_to_world=stacked("camera_to_world"),
                             points=stacked("points"), valid=stacked("valid"),
                             dataset=[item.dataset for item in items], sequence=[item.sequence for item in items])
