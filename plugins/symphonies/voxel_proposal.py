"""Depth-based voxel proposal: voxels hit by a lifted pixel attend to the image features.

`lift_pixels_to_voxels` back-projects every pixel with its depth into voxel indices of the decoder grid
(Symphonies' pix2vox); `VoxelProposalLayer` gives the hit voxels a deformable cross-attention to the
multi-level image features, with the voxel's projected pixel as reference point. All other voxels keep
their learned embedding.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from .deformable_attention import MultiScaleDeformableAttention
from .transformer_layers import DeformableTransformerLayer


def lift_pixels_to_voxels(depth: torch.Tensor, intrinsics: torch.Tensor, world_to_camera: torch.Tensor,
                          voxel_origin: torch.Tensor, voxel_size: torch.Tensor, downsample_z: int = 1) -> torch.Tensor:
    """Voxel index of every pixel's back-projected point.

    Args:
        depth: (B, H, W) metres along the optical axis.
        intrinsics: (B, 3, 3) pixels, records' convention (pixel (u, v) has its centre at (u + 0.5, v + 0.5)).
        world_to_camera: (B, 4, 4), OpenCV camera axes.
        voxel_origin: (B, 3) world position of voxel (0, 0, 0)'s minimum corner, metres.
        voxel_size: (B, 3) metres per voxel of the grid the indices refer to (before z down-sampling).
        downsample_z: the z index is divided by this before truncation.
    Returns:
        (B, H*W, 3) int64 (x, y, z), pixels in row-major order: ((p - origin) / size - 0.5), z / downsample_z,
        truncated toward zero (so values in (-1, 0) become 0), as Symphonies' pix2vox(...).long().
        With Symphonies' integer-centre K = ours - 0.5 on (cx, cy) this lifts the same rays.
    """
    batch, height, width = depth.shape
    depth = depth.float()
    rows = torch.arange(height, device=depth.device, dtype=torch.float32) + 0.5
    columns = torch.arange(width, device=depth.device, dtype=torch.float32) + 0.5
    v, u = torch.meshgrid(rows, columns, indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)]).view(1, 3, -1) * depth.view(batch, 1, -1)  # (B, 3, HW)
    camera_points = torch.linalg.inv(intrinsics.float()) @ pixels
    camera_to_world = torch.linalg.inv(world_to_camera.float())
    world = camera_to_world[:, :3, :3] @ camera_points + camera_to_world[:, :3, 3:]
    voxels = (world.transpose(1, 2) - voxel_origin.float()[:, None]) / voxel_size.float()[:, None] - 0.5
    if downsample_z != 1:
        voxels = torch.cat([voxels[..., :2], voxels[..., 2:] / downsample_z], dim=-1)
    return voxels.long()


def voxel_hit_mask(voxel_hits: torch.Tensor, grid_shape: Sequence[int]) -> torch.Tensor:
    """(N,) bool over the raster-order voxels of `grid_shape`: True where some pixel of `voxel_hits`
    (1, P, 3) int64 falls (indices outside the grid are ignored)."""
    shape = torch.tensor(list(grid_shape), device=voxel_hits.device)
    hits = voxel_hits.reshape(-1, 3)
    inside = ((hits >= 0) & (hits < shape)).all(-1)
    hits = hits[inside]
    flat = (hits[:, 0] * shape[1] + hits[:, 1]) * shape[2] + hits[:, 2]
    mask = torch.zeros(int(shape.prod()), dtype=torch.bool, device=voxel_hits.device)
    mask[flat] = True
    return mask


class VoxelProposalLayer(nn.Module):
    """Deformable cross-attention (+ FFN) from the depth-hit voxels to the image features.

    Args:
        embed_dims: C. grid_shape: decoder grid (X, Y, Z). num_heads, num_levels, num_points: of the
        deformable attention. dropout: its output dropout.
    """

    def __init__(self, embed_dims: int, grid_shape: Sequence[int], num_heads: int = 8, num_levels: int = 3,
                 num_points: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.grid_shape = tuple(int(s) for s in grid_shape)
        self.block = DeformableTransformerLayer(
            embed_dims, MultiScaleDeformableAttention(embed_dims, num_heads, num_levels, num_points, dropout=dropout))

    def forward(self, scene_embed: torch.Tensor, feats: torch.Tensor, feat_shapes: Sequence[Tuple[int, int]],
                scene_pos: torch.Tensor, voxel_hits: torch.Tensor, reference_pixels: torch.Tensor) -> torch.Tensor:
        """
        Args:
            scene_embed: (1, N, C) voxel tokens. feats: (1, S, C) flattened image levels of `feat_shapes`.
            scene_pos: (1, N, C). voxel_hits: (1, H*W, 3) int64 from `lift_pixels_to_voxels`.
            reference_pixels: (1, N, 2) normalised (x, y) image position of every voxel.
        Returns:
            (1, N, C): hit voxels updated, the others unchanged.
        """
        if scene_embed.shape[0] != 1:
            raise ValueError("VoxelProposalLayer works on one sample at a time (batch size 1)")
        mask = voxel_hit_mask(voxel_hits, self.grid_shape)
        levels = len(feat_shapes)
        reference = reference_pixels[:, mask].unsqueeze(2).expand(-1, -1, levels, -1)
        updated = self.block(scene_embed[:, mask], feats, query_pos=scene_pos[:, mask],
                             reference_points=reference, spatial_shapes=feat_shapes)
        return scene_embed.masked_scatter(mask[None, :, None], updated)
