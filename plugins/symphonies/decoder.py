"""Symphonies' decoder: voxel proposal, L SymphoniesLayers (instance queries <-> image <-> voxels), ASPP
and the classification head that restores z and the full resolution.

Grids: the TARGET grid (X, Y, Z) (labels); the PROJECTION grid = target // project_scale (the grid of
`projected_pix` / `fov_mask`); the DECODER grid = projection grid with z // downsample_z, N voxels.
Tokens are in raster order (x-major, z fastest). Batch size 1 (as the original).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from recon_trainer.config import ConfigError

from .deformable_attention import MultiScaleDeformableAttention
from .positional_encoding import LearnableSqueezePositionalEncoding
from .squeeze_attention import DeformableSqueezeAttention
from .transformer_layers import DeformableTransformerLayer, TransformerLayer
from .voxel_proposal import VoxelProposalLayer, lift_pixels_to_voxels

ASPP_AFTER_LAYER = 2  # the original applies ASPP after the layer with index 2 (only if there is one)


def flatten_levels(feats: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, List[Tuple[int, int]]]:
    """[(B, C, H_l, W_l)] -> (B, sum H_l*W_l, C) and the (H_l, W_l) list."""
    shapes = [(int(f.shape[-2]), int(f.shape[-1])) for f in feats]
    return torch.cat([f.flatten(2).transpose(1, 2) for f in feats], dim=1), shapes


def normalised_voxel_grid(grid_shape: Sequence[int]) -> torch.Tensor:
    """(N, 3) voxel index / (size - 1) per axis (x, y, z) in raster order (0 for an axis of size 1)."""
    axes = [torch.arange(s, dtype=torch.float32) / max(int(s) - 1, 1) for s in grid_shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


def downsample_projection(projected_pix: torch.Tensor, fov_mask: torch.Tensor, source_shape: Sequence[int],
                          target_shape: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Trilinear (align_corners=False) resampling of per-voxel pixels and FOV flags to a coarser z, as the
    original: pixels averaged then truncated to int64, FOV true where the average is non-zero.

    projected_pix (1, N_src, 2) int64, fov_mask (1, N_src) bool -> (1, N_dst, 2) int64, (1, N_dst) bool.
    """
    def resample(values: torch.Tensor) -> torch.Tensor:  # (1, N, c) -> (1, N', c)
        volume = values.transpose(1, 2).reshape(1, values.shape[-1], *source_shape).float()
        volume = F.interpolate(volume, size=tuple(target_shape), mode="trilinear", align_corners=False)
        return volume.flatten(2).transpose(1, 2)

    pixels = resample(projected_pix).to(projected_pix.dtype)
    fov = resample(fov_mask.unsqueeze(-1)).squeeze(-1).to(torch.bool)
    return pixels, fov


class ASPP3D(nn.Module):
    """x + sum over dilations d of [Conv3d(d) BN ReLU Conv3d(d) BN](x), then ReLU (3x3x3, no bias)."""

    def __init__(self, channels: int, dilations: Sequence[int] = (1, 3)) -> None:
        super().__init__()
        self.branches = nn.ModuleList([
            nn.Sequential(nn.Conv3d(channels, channels, 3, padding=d, dilation=d, bias=False), nn.BatchNorm3d(channels),
                          nn.ReLU(inplace=True),
                          nn.Conv3d(channels, channels, 3, padding=d, dilation=d, bias=False), nn.BatchNorm3d(channels))
            for d in dilations])

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """(B, C, X, Y, Z) -> same shape."""
        total = volume
        for branch in self.branches:
            total = total + branch(volume)
        return F.relu(total)


class ClassificationHead(nn.Module):
    """Decoder-grid features (1, C, X', Y', Z') -> logits (1, classes, X, Y, Z) of the target grid.

    restore_z: ConvTranspose3d(k3, stride (1, 1, dz), output_padding (0, 0, dz - 1)) + BN + ReLU (dz > 1);
    upsample: ConvTranspose3d(k3, stride 2, output_padding 1) + BN + ReLU (project_scale 2);
    classifier: Conv3d 1x1x1.
    """

    def __init__(self, embed_dims: int, num_classes: int, downsample_z: int, project_scale: int) -> None:
        super().__init__()
        self.restore_z = nn.Sequential(
            nn.ConvTranspose3d(embed_dims, embed_dims, 3, stride=(1, 1, downsample_z), padding=1,
                               output_padding=(0, 0, downsample_z - 1)),
            nn.BatchNorm3d(embed_dims), nn.ReLU()) if downsample_z != 1 else None
        self.upsample = nn.Sequential(
            nn.ConvTranspose3d(embed_dims, embed_dims, 3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm3d(embed_dims), nn.ReLU()) if project_scale == 2 else None
        self.classifier = nn.Conv3d(embed_dims, num_classes, kernel_size=1)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        if self.restore_z is not None:
            volume = self.restore_z(volume)
        if self.upsample is not None:
            volume = self.upsample(volume)
        return self.classifier(volume)


def scatter_tokens(tokens: torch.Tensor, selected: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """tokens (1, N, C) with the rows where mask (N,) is True replaced by `selected` (1, M, C)."""
    return tokens.masked_scatter(mask[None, :, None], selected)


class SymphoniesLayer(nn.Module):
    """One decoder layer.

    1. image_cross_attn: queries -> image levels (deformable, reference = learned 2-D points) + FFN;
    2. scene_query_attn: in-FOV voxels -> queries (multi-head attention, no FFN);
    3. scene_self_attn: in-FOV voxels -> the volume before step 2 (squeeze attention, 2P points) + FFN;
    4. query_scene_attn: queries -> the updated volume (squeeze attention, 2P points, no FFN);
    5. query_self_attn: queries self-attention + FFN.
    Steps 4-5 only with `query_update` (the last layer has none).
    """

    def __init__(self, embed_dims: int, num_heads: int = 8, num_levels: int = 3, num_points: int = 4,
                 query_update: bool = True, dropout: float = 0.1) -> None:
        super().__init__()
        self.image_cross_attn = DeformableTransformerLayer(
            embed_dims, MultiScaleDeformableAttention(embed_dims, num_heads, num_levels, num_points, dropout=dropout))
        self.scene_query_attn = TransformerLayer(embed_dims, num_heads, mlp_ratio=0)
        self.scene_self_attn = DeformableTransformerLayer(
            embed_dims, DeformableSqueezeAttention(embed_dims, num_heads, num_points * 2, dropout=dropout))
        self.query_update = query_update
        if query_update:
            self.query_scene_attn = DeformableTransformerLayer(
                embed_dims, DeformableSqueezeAttention(embed_dims, num_heads, num_points * 2, dropout=dropout),
                mlp_ratio=0)
            self.query_self_attn = TransformerLayer(embed_dims, num_heads)

    def forward(self, scene: torch.Tensor, queries: torch.Tensor, feats: torch.Tensor,
                feat_shapes: Sequence[Tuple[int, int]], grid_shape: Sequence[int], scene_pos: torch.Tensor,
                query_pos: Optional[torch.Tensor], image_reference: torch.Tensor, query_voxel_reference: torch.Tensor,
                voxel_reference: torch.Tensor, fov_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            scene: (1, N, C) voxel tokens. queries: (1, Q, C). feats: (1, S, C) flattened image levels.
            feat_shapes: [(H_l, W_l)]. grid_shape: decoder grid (X, Y, Z). scene_pos: (1, N, C).
            query_pos: (1, Q, C) or None. image_reference: (1, Q, L, 2) normalised (x, y).
            query_voxel_reference: (1, Q, 3) normalised voxel (x, y, z). voxel_reference: (N, 3) normalised.
            fov_mask: (N,) bool.
        Returns:
            updated scene (1, N, C) and queries (1, Q, C).
        """
        fov_scene = scene[:, fov_mask]
        fov_pos = scene_pos[:, fov_mask]
        queries = self.image_cross_attn(queries, feats, query_pos=query_pos, reference_points=image_reference,
                                        spatial_shapes=feat_shapes)
        fov_scene = self.scene_query_attn(fov_scene, queries, queries, fov_pos, query_pos)
        fov_scene = self.scene_self_attn(fov_scene, scene, query_pos=fov_pos, volume_shape=grid_shape,
                                         reference_points=voxel_reference[fov_mask].unsqueeze(0))
        scene = scatter_tokens(scene, fov_scene, fov_mask)
        if not self.query_update:
            return scene, queries
        queries = self.query_scene_attn(queries, scene, query_pos=query_pos, volume_shape=grid_shape,
                                        reference_points=query_voxel_reference)
        queries = self.query_self_attn(queries, query_pos=query_pos)
        return scene, queries


class SymphoniesDecoder(nn.Module):
    """Voxel queries from depth and image features, refined together with instance queries.

    Args:
        embed_dims: C. num_classes: output classes.
        scene_shape: target grid (X, Y, Z). project_scale: 1 or 2 (decoder at half resolution).
        image_shape: (H, W) of the image and depth.
        downsample_z: extra z reduction of the decoder grid (restored by the head).
        num_layers, num_heads, num_levels, num_points: transformer sizes (the squeeze attentions use 2x points).
        scene_pos_shape / scene_pos_squeeze: positional-encoding factorisation (default: the decoder grid,
            squeeze (1, 1, 1)); see positional_encoding.resolve_squeeze_shape.
        dropout: the deformable attentions' output dropout (mmcv's default 0.1).
        full_precision: run in float32 even under autocast (the original decorates forward with
            autocast(dtype=float32)).
    """

    def __init__(self, embed_dims: int, num_classes: int, scene_shape: Sequence[int], project_scale: int,
                 image_shape: Sequence[int], downsample_z: int = 1, num_layers: int = 3, num_heads: int = 8,
                 num_levels: int = 3, num_points: int = 4, scene_pos_shape: Optional[Sequence[int]] = None,
                 scene_pos_squeeze: Optional[Sequence[int]] = None, dropout: float = 0.1,
                 full_precision: bool = True) -> None:
        super().__init__()
        if project_scale not in (1, 2):
            raise ConfigError(f"project_scale: expected 1 or 2, got {project_scale}")
        if downsample_z < 1:
            raise ConfigError(f"downsample_z: expected a positive integer, got {downsample_z}")
        if num_layers < 1:
            raise ConfigError(f"num_layers: expected at least 1, got {num_layers}")
        target = tuple(int(s) for s in scene_shape)
        if len(target) != 3 or any(s % project_scale for s in target):
            raise ConfigError(f"scene_shape: expected three sizes divisible by project_scale {project_scale}, "
                              f"got {list(scene_shape)}")
        self.projection_shape = tuple(s // project_scale for s in target)
        if self.projection_shape[2] % downsample_z:
            raise ConfigError(f"downsample_z: {downsample_z} must divide the projection grid's z size "
                              f"{self.projection_shape[2]} (scene_shape z / project_scale)")
        self.grid_shape = self.projection_shape[:2] + (self.projection_shape[2] // downsample_z,)
        self.scene_shape = target
        self.project_scale = project_scale
        self.downsample_z = downsample_z
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.full_precision = full_precision
        self.num_voxels = self.grid_shape[0] * self.grid_shape[1] * self.grid_shape[2]

        self.voxel_proposal = VoxelProposalLayer(embed_dims, self.grid_shape, num_heads, num_levels, num_points,
                                                 dropout=dropout)
        self.layers = nn.ModuleList([
            SymphoniesLayer(embed_dims, num_heads, num_levels, num_points, query_update=index != num_layers - 1,
                            dropout=dropout) for index in range(num_layers)])
        self.scene_embed = nn.Embedding(self.num_voxels, embed_dims)
        self.scene_pos = LearnableSqueezePositionalEncoding(embed_dims, self.grid_shape, scene_pos_shape,
                                                            scene_pos_squeeze)
        self.aspp = ASPP3D(embed_dims, (1, 3))
        self.head = ClassificationHead(embed_dims, num_classes, downsample_z, project_scale)
        self.register_buffer("voxel_reference", normalised_voxel_grid(self.grid_shape), persistent=False)

    def query_voxel_reference(self, query_points: torch.Tensor, voxel_hits: torch.Tensor) -> torch.Tensor:
        """(1, Q, 3) normalised voxel (hit index / (size - 1), clamped to [0, 1]) of the pixel under each
        query's 2-D point (1, Q, 2) in [0, 1] (x, y); voxel_hits (1, H*W, 3) int64."""
        height, width = self.image_shape
        scale = torch.tensor([width, height], device=query_points.device, dtype=query_points.dtype)
        pixel = (query_points * scale).long()
        column = pixel[..., 0].clamp(0, width - 1)
        row = pixel[..., 1].clamp(0, height - 1)
        hits = voxel_hits[0, row[0] * width + column[0]].unsqueeze(0)  # (1, Q, 3)
        extent = torch.tensor([max(s - 1, 1) for s in self.grid_shape], device=hits.device, dtype=torch.float32)
        return (hits.float() / extent).clamp(0, 1)

    def forward(self, queries: torch.Tensor, query_points: torch.Tensor, feats: Sequence[torch.Tensor],
                depth: torch.Tensor, intrinsics: torch.Tensor, world_to_camera: torch.Tensor,
                voxel_origin: torch.Tensor, voxel_size: torch.Tensor, projected_pix: torch.Tensor,
                fov_mask: torch.Tensor, query_pos: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        """
        Args:
            queries: (1, Q, C) instance queries. query_points: (1, Q, 2) their 2-D points in [0, 1] (x, y).
            feats: L image levels (1, C, H_l, W_l).
            depth: (1, H, W) metres. intrinsics: (1, 3, 3) records' convention (pixel centres at u + 0.5).
            world_to_camera: (1, 4, 4). voxel_origin: (1, 3) metres. voxel_size: (1, 3) metres per TARGET voxel.
            projected_pix: (1, N_proj, 2) int64 (u, v) of every projection-grid voxel. fov_mask: (1, N_proj) bool.
            query_pos: (1, Q, C) or None (Symphonies' encoder gives none).
        Returns:
            logits (1, classes, X, Y, Z) of the target grid: one per layer in training, the last only in eval.
        """
        device_type = queries.device.type
        if self.full_precision and torch.is_autocast_enabled(device_type):
            with torch.autocast(device_type=device_type, enabled=False):
                return self._forward(queries.float(), query_points.float(), [f.float() for f in feats], depth,
                                     intrinsics, world_to_camera, voxel_origin, voxel_size, projected_pix, fov_mask,
                                     None if query_pos is None else query_pos.float())
        return self._forward(queries, query_points, feats, depth, intrinsics, world_to_camera, voxel_origin,
                             voxel_size, projected_pix, fov_mask, query_pos)

    def check_inputs(self, queries: torch.Tensor, depth: torch.Tensor, projected_pix: torch.Tensor,
                     fov_mask: torch.Tensor) -> None:
        """ValueError naming the input whose shape or dtype does not fit."""
        if queries.shape[0] != 1:
            raise ValueError(f"SymphoniesDecoder takes batch size 1 (got {queries.shape[0]}); loop over the batch")
        if tuple(depth.shape[-2:]) != self.image_shape:
            raise ValueError(f"depth: expected (1, {self.image_shape[0]}, {self.image_shape[1]}) (image_shape), "
                             f"got {tuple(depth.shape)}")
        count = self.projection_shape[0] * self.projection_shape[1] * self.projection_shape[2]
        if projected_pix.shape != (1, count, 2) or projected_pix.dtype != torch.long:
            raise ValueError(f"projected_pix: expected (1, {count}, 2) int64 for the projection grid "
                             f"{list(self.projection_shape)}, got {tuple(projected_pix.shape)} {projected_pix.dtype}")
        if fov_mask.shape != (1, count) or fov_mask.dtype != torch.bool:
            raise ValueError(f"fov_mask: expected (1, {count}) bool, got {tuple(fov_mask.shape)} {fov_mask.dtype}")

    def _forward(self, queries: torch.Tensor, query_points: torch.Tensor, feats: Sequence[torch.Tensor],
                 depth: torch.Tensor, intrinsics: torch.Tensor, world_to_camera: torch.Tensor,
                 voxel_origin: torch.Tensor, voxel_size: torch.Tensor, projected_pix: torch.Tensor,
                 fov_mask: torch.Tensor, query_pos: Optional[torch.Tensor]) -> List[torch.Tensor]:
        self.check_inputs(queries, depth, projected_pix, fov_mask)
        if self.downsample_z != 1:
            projected_pix, fov_mask = downsample_projection(projected_pix, fov_mask, self.projection_shape,
                                                            self.grid_shape)
        voxel_size = voxel_size.reshape(1, -1).expand(1, 3) * self.project_scale
        voxel_hits = lift_pixels_to_voxels(depth.reshape(1, *self.image_shape), intrinsics, world_to_camera,
                                           voxel_origin.reshape(1, 3), voxel_size, self.downsample_z)
        feats_flat, feat_shapes = flatten_levels(feats)
        image_reference = query_points.unsqueeze(2).expand(-1, -1, len(feat_shapes), -1)
        query_voxel_reference = self.query_voxel_reference(query_points, voxel_hits)
        height, width = self.image_shape
        reference_pixels = (projected_pix.float() + 0.5) / torch.tensor([width, height], device=projected_pix.device)
        fov = fov_mask[0]

        scene = self.scene_embed.weight.unsqueeze(0)
        scene_pos = self.scene_pos()
        scene = self.voxel_proposal(scene, feats_flat, feat_shapes, scene_pos, voxel_hits, reference_pixels)
        outputs = []
        for index, layer in enumerate(self.layers):
            scene, queries = layer(scene, queries, feats_flat, feat_shapes, self.grid_shape, scene_pos, query_pos,
                                   image_reference, query_voxel_reference, self.voxel_reference, fov)
            if index == ASPP_AFTER_LAYER:
                scene = self.to_volume(self.aspp(self.to_volume(scene)))
            if self.training or index == len(self.layers) - 1:
                outputs.append(self.head(self.to_volume(scene)))
        return outputs

    def to_volume(self, tensor: torch.Tensor) -> torch.Tensor:
        """(1, N, C) tokens <-> (1, C, X, Y, Z) volume of the decoder grid (direction by the rank).

        The volume is made contiguous: a transposed view (channels-last strides with batch stride C) fed to
        Conv3d -> BatchNorm3d gives WRONG gradients on CPU in torch 2.15 (checked by finite differences).
        """
        if tensor.dim() == 3:
            return tensor.transpose(1, 2).reshape(tensor.shape[0], tensor.shape[2], *self.grid_shape).contiguous()
        return tensor.flatten(2).transpose(1, 2)

    def extra_repr(self) -> str:
        return f"grid_shape={self.grid_shape}, image_shape={self.image_shape}"

