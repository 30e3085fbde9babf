"""Deformable attention over a 3-D voxel volume done with a 2-D kernel by folding z into x.

The volume (X, Y, Z) is viewed as a 2-D map of H = X * Z rows and W = Y columns: voxel (x, y, z) sits at
row x * Z + z, column y. A 3-D reference point with normalised coordinates (x_n, y_n, z_n) becomes the
2-D point (column y_n, row x_n + (z_n - 0.5) / Z), which is what Symphonies' DeformableSqueezeAttention
does with its default squeeze axis. Sampling then mixes neighbouring z within one x slab (and across
slab borders), as the original does; it is not trilinear 3-D sampling.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from .deformable_attention import MultiScaleDeformableAttention


def squeeze_volume(value: torch.Tensor, volume_shape: Sequence[int]) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Reorder a flattened volume into the folded 2-D map.

    Args:
        value: (B, X*Y*Z, C), voxels in raster (x-major, z fastest) order.
        volume_shape: (X, Y, Z).
    Returns:
        (B, X*Z*Y, C) in row-major order of the (X*Z, Y) map, and its (H, W) = (X*Z, Y).
    """
    x_size, y_size, z_size = (int(s) for s in volume_shape)
    batch, count, channels = value.shape
    if count != x_size * y_size * z_size:
        raise ValueError(f"value has {count} tokens, volume_shape {tuple(volume_shape)} holds "
                         f"{x_size * y_size * z_size}")
    folded = value.view(batch, x_size, y_size, z_size, channels).permute(0, 1, 3, 2, 4)
    return folded.reshape(batch, count, channels), (x_size * z_size, y_size)


def squeeze_reference_points(reference_points: torch.Tensor, volume_shape: Sequence[int]) -> torch.Tensor:
    """3-D normalised reference points (..., 3) as (x, y, z) -> 2-D points (..., 2) (column, row) of the map."""
    z_size = int(volume_shape[2])
    x_norm, y_norm, z_norm = reference_points.unbind(-1)
    return torch.stack([y_norm, x_norm + (z_norm - 0.5) / z_size], dim=-1)


class DeformableSqueezeAttention(nn.Module):
    """Deformable attention from queries to a voxel volume, sampled in the folded (X*Z, Y) map.

    Args:
        embed_dims: C. num_heads: heads. num_points: samples per head.
        dropout: the deformable attention's output dropout (mmcv's default 0.1).
    """

    def __init__(self, embed_dims: int, num_heads: int = 8, num_points: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.attention = MultiScaleDeformableAttention(embed_dims, num_heads, num_levels=1, num_points=num_points,
                                                       dropout=dropout)

    def forward(self, query: torch.Tensor, value: torch.Tensor, volume_shape: Sequence[int],
                reference_points: torch.Tensor, query_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            query: (B, Q, C). value: (B, X*Y*Z, C) raster-order voxel features.
            volume_shape: (X, Y, Z).
            reference_points: (B, Q, 3) normalised voxel coordinates (x, y, z) in [0, 1].
            query_pos: (B, Q, C) or None.
        Returns:
            (B, Q, C): the attention output plus `query` (mmcv's identity).
        """
        folded, map_shape = squeeze_volume(value, volume_shape)
        reference = squeeze_reference_points(reference_points, volume_shape).unsqueeze(2)  # (B, Q, 1, 2)
        return self.attention(query, folded, query_pos=query_pos, reference_points=reference,
                              spatial_shapes=[map_shape])
