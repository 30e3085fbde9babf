"""SSCBatch: B images with their voxel targets and the image-voxel geometry Symphonies needs.

The datasets (recon_trainer/data/ssc) give ViewRecords whose extras["voxels"] is the target
VoxelRecord. Per item the builder computes what the original's datasets compute (MonoScene's
vox2pix and compute_local_frustums, recon_trainer/data/ssc/geometry.py):

- projected_pix / fov_mask of every voxel of the projection grid (the target grid coarsened by
  `project_scale`: voxel size x scale, same origin), in raster (x-major) order;
- with frustum_size > 0, the local frustum masks and class counts of the target grid
  (frustum_size^2 image tiles) for the frustum proportion loss.
"""
from __future__ import annotations

import dataclasses
from typing import Any, List, Optional, Sequence

import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.batching import BatchBuilderBase, map_tensor_fields
from recon_trainer.data.records import ViewRecord, VoxelRecord, invert_pose
from recon_trainer.data.ssc.geometry import local_frustums, voxel_projection


@dataclasses.dataclass
class SSCBatch:
    """B samples (H x W images, X x Y x Z target grids).

    image: (B, 3, H, W) in [0, 1]. depth: (B, H, W) metres (0 unknown) or None: the depth the data
    gives (the label depth, or precomputed predictions). reference_depth: (B, H, W) the label depth
    when `depth` holds predictions (per-scene alignment), else None. intrinsics: (B, 3, 3) pixels,
    centres at + 0.5. world_to_camera: (B, 4, 4). voxel_origin: (B, 3) metres. voxel_size: (B, 3)
    metres per axis of the target grid. target: (B, X, Y, Z) int64, 255 ignored, or None.
    projected_pix: (B, N, 2) int64 (u, v) of the N voxels of the projection grid; fov_mask: (B, N)
    bool. frustum_masks: (B, F, X, Y, Z) bool and frustum_counts: (B, F, C) float32, or None.
    class_weights: (C,) float32 (the first item's). name, dataset: B strings.
    """

    image: torch.Tensor
    depth: Optional[torch.Tensor]
    reference_depth: Optional[torch.Tensor]
    intrinsics: torch.Tensor
    world_to_camera: torch.Tensor
    voxel_origin: torch.Tensor
    voxel_size: torch.Tensor
    target: Optional[torch.Tensor]
    projected_pix: torch.Tensor
    fov_mask: torch.Tensor
    frustum_masks: Optional[torch.Tensor]
    frustum_counts: Optional[torch.Tensor]
    class_weights: Optional[torch.Tensor]
    name: List[str]
    dataset: List[str]

    def __len__(self) -> int:
        return int(self.image.shape[0])

    @property
    def grid_shape(self) -> tuple:
        """(X, Y, Z) of the target grid."""
        if self.target is None:
            raise ValueError("SSCBatch.grid_shape: the batch has no target")
        return tuple(int(s) for s in self.target.shape[1:])

    def to(self, device: Any) -> "SSCBatch":
        """The batch with every tensor on `device`."""
        return map_tensor_fields(self, lambda x: x.to(device))

    def select(self, indices: Sequence[int]) -> "SSCBatch":
        """The samples at `indices` (class_weights kept whole)."""
        kept = [int(i) for i in indices]
        return map_tensor_fields(dataclasses.replace(self, class_weights=None), lambda x: x[kept],
                                 name=[self.name[i] for i in kept], dataset=[self.dataset[i] for i in kept],
                                 class_weights=self.class_weights)


@registry.register
class SSCBatchBuilder(BatchBuilderBase):
    """ViewRecords with a target VoxelRecord (extras["voxels"]) to an SSCBatch (module doc)."""

    project_scale: int = 1  # the projection grid is the target grid coarsened by this (Symphonies' volume_scale)
    frustum_size: int = 8  # local frustums per image side for the frustum proportion loss; 0: none

    def __post_init__(self) -> None:
        if self.project_scale < 1:
            raise ConfigError(f"SSCBatchBuilder.project_scale={self.project_scale}: expected 1 or more")
        if self.frustum_size < 0:
            raise ConfigError(f"SSCBatchBuilder.frustum_size={self.frustum_size}: expected 0 (none) or more")

    def item(self, record: Any) -> dict:
        if not isinstance(record, ViewRecord) or not isinstance(record.extras.get("voxels"), VoxelRecord):
            raise TypeError(f"SSCBatchBuilder: a dataset item is a {type(record).__name__} without a voxel target; it "
                            "takes the semantic scene completion datasets' records (NYUv2SSC(...), SemanticKITTI(...))")
        for name in ("intrinsics", "camera_to_world"):
            if getattr(record, name) is None:
                raise ValueError(f"SSCBatchBuilder: sample {record.sequence!r} has no {name}")
        voxels: VoxelRecord = record.extras["voxels"]
        size = voxels.voxel_size_xyz()
        grid = voxels.grid_shape
        if any(n % self.project_scale for n in grid):
            raise ValueError(f"SSCBatchBuilder: the grid {grid} of {record.sequence!r} is not divisible by "
                             f"project_scale={self.project_scale}")
        fine = voxel_projection(voxels, record) if self.frustum_size or self.project_scale == 1 else None
        if self.project_scale == 1:
            pixels, _, fov = fine
        else:
            coarse_shape = tuple(n // self.project_scale for n in grid)
            coarse = VoxelRecord(torch.zeros(coarse_shape, dtype=torch.uint8),
                                 tuple((size * self.project_scale).tolist()), voxels.voxel_origin)
            pixels, _, fov = voxel_projection(coarse, record)
        item = {
            "image": record.image.float(),
            "depth": None if record.depth is None else record.depth.float(),
            "reference_depth": record.extras.get("label_depth"),
            "intrinsics": record.intrinsics.float(),
            "world_to_camera": invert_pose(record.camera_to_world.double()).float(),
            "voxel_origin": voxels.voxel_origin.float(),
            "voxel_size": size,
            "target": voxels.labels.long(),
            "projected_pix": pixels.long(),
            "fov_mask": fov,
            "class_weights": voxels.extras.get("class_weights"),
            "name": str(record.sequence), "dataset": str(record.dataset),
            "frustum_masks": None, "frustum_counts": None,
        }
        if self.frustum_size:
            if item["class_weights"] is None:
                raise ValueError(f"SSCBatchBuilder: sample {record.sequence!r} has no class_weights in its voxel "
                                 "extras (the number of classes of the frustum counts)")
            num_classes = len(item["class_weights"])
            item["frustum_masks"], item["frustum_counts"] = local_frustums(
                fine[0], fine[1], voxels.labels, record.image_size_hw, num_classes, self.frustum_size)
        return item

    def collate(self, items: List[dict]) -> SSCBatch:
        shapes = {tuple(item["target"].shape) for item in items}
        images = {tuple(item["image"].shape) for item in items}
        if len(shapes) > 1 or len(images) > 1:
            raise ValueError(f"SSCBatchBuilder: one batch mixes grids {sorted(shapes)} or images {sorted(images)}")

        def stacked(key: str) -> Optional[torch.Tensor]:
            values = [item[key] for item in items]
            if any(v is None for v in values):
                return None
            return torch.stack([torch.as_tensor(v) for v in values])

        weights = items[0]["class_weights"]
        return SSCBatch(
            image=stacked("image"), depth=stacked("depth"), reference_depth=stacked("reference_depth"),
            intrinsics=stacked("intrinsics"), world_to_camera=stacked("world_to_camera"),
            voxel_origin=stacked("voxel_origin"), voxel_size=stacked("voxel_size"), target=stacked("target"),
            projected_pix=stacked("projected_pix"), fov_mask=stacked("fov_mask"),
            frustum_masks=stacked("frustum_masks"), frustum_counts=stacked("frustum_counts"),
            class_weights=None if weights is None else torch.as_tensor(weights, dtype=torch.float32),
            name=[item["name"] for item in items], dataset=[item["dataset"] for item in items],
        )
