"""Learnable factorised ("squeeze") positional encoding of the voxel tokens, parametrised by the grid.

Each axis i has a table of `shape[i] * squeeze[i]` learned vectors of C // 2 dims. Token t, in voxel
raster order, is read as the multi-index (a0, a1, a2, b0, b1, b2) over the sizes
(shape0, shape1, shape2, squeeze0, squeeze1, squeeze2) (b2 fastest); axis i's vector is entry
a_i * squeeze_i + b_i of its table. The three vectors are concatenated and projected to C by a Linear.
This is how Symphonies orders the tokens: with squeeze (1, 1, 1) the encoding is aligned with the grid
(entry x, y, z of the tables for voxel (x, y, z)); with other squeezes it is a fixed, grid-independent
factorisation whose only requirement is the token count. Symphonies hard-codes shape (128, 128, 2) with
squeeze (2, 2, 1) (its KITTI 128 x 128 x 8 decoder grid); the NYU usage guide uses (20, 20, 50) /
(5, 5, 1) for a 100 x 100 x 50 grid and (10, 10, 25) / (5, 5, 1) for 50 x 50 x 25.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from recon_trainer.config import ConfigError

Triple = Tuple[int, int, int]


def _triple(name: str, value: Sequence[int]) -> Triple:
    values = tuple(int(v) for v in value)
    if len(values) != 3 or any(v < 1 for v in values):
        raise ConfigError(f"{name}: expected three positive integers, got {list(value)}")
    return values  # type: ignore[return-value]


def resolve_squeeze_shape(grid_shape: Sequence[int], shape: Optional[Sequence[int]] = None,
                          squeeze: Optional[Sequence[int]] = None) -> Tuple[Triple, Triple]:
    """(shape, squeeze) of the encoding for a decoder grid (X, Y, Z).

    Defaults: squeeze (1, 1, 1) and shape = grid // squeeze. A squeeze alone must divide the grid per
    axis; a shape alone gives squeeze = grid // shape (must divide). With both, only the token count
    prod(shape) * prod(squeeze) must equal X * Y * Z (Symphonies' (128, 128, 2) / (2, 2, 1) for 128x128x8).
    Raises ConfigError (a ValueError) naming scene_pos_shape / scene_pos_squeeze otherwise.
    """
    grid = _triple("scene grid", grid_shape)
    if squeeze is not None:
        squeeze = _triple("scene_pos_squeeze", squeeze)
    if shape is not None:
        shape = _triple("scene_pos_shape", shape)
    if shape is None and squeeze is None:
        squeeze = (1, 1, 1)
    if shape is None:
        if any(g % s for g, s in zip(grid, squeeze)):
            raise ConfigError(f"scene_pos_squeeze: {list(squeeze)} must divide the decoder grid {list(grid)} per axis")
        shape = tuple(g // s for g, s in zip(grid, squeeze))
    elif squeeze is None:
        if any(g % s for g, s in zip(grid, shape)):
            raise ConfigError(f"scene_pos_shape: {list(shape)} must divide the decoder grid {list(grid)} per axis")
        squeeze = tuple(g // s for g, s in zip(grid, shape))
    tokens = shape[0] * shape[1] * shape[2] * squeeze[0] * squeeze[1] * squeeze[2]
    voxels = grid[0] * grid[1] * grid[2]
    if tokens != voxels:
        raise ConfigError(f"scene_pos_shape {list(shape)} x scene_pos_squeeze {list(squeeze)} gives {tokens} tokens, "
                          f"but the decoder grid {list(grid)} has {voxels} voxels (the products must be equal)")
    return shape, squeeze  # type: ignore[return-value]


class LearnableSqueezePositionalEncoding(nn.Module):
    """Learned positional encoding of the N = X*Y*Z voxel tokens (see the module docstring).

    Args:
        embed_dims: C (even split: each axis table has C // 2 dims).
        grid_shape: the decoder grid (X, Y, Z).
        shape, squeeze: see `resolve_squeeze_shape`.
    Parameters: `axis_tables[i]` Embedding(shape_i * squeeze_i, C // 2); `projection` Linear(3 * (C // 2), C).
    """

    def __init__(self, embed_dims: int, grid_shape: Sequence[int], shape: Optional[Sequence[int]] = None,
                 squeeze: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        self.shape, self.squeeze = resolve_squeeze_shape(grid_shape, shape, squeeze)
        half = embed_dims // 2
        self.axis_tables = nn.ModuleList(
            [nn.Embedding(size * factor, half) for size, factor in zip(self.shape, self.squeeze)])
        self.projection = nn.Linear(3 * half, embed_dims)
        self.num_tokens = int(torch.tensor(self.shape + self.squeeze).prod())

    def table_indices(self, device: Optional[torch.device] = None) -> torch.Tensor:
        """(3, N) int64: the table row of each axis for every token, in token order."""
        sizes = self.shape + self.squeeze
        indices = []
        for axis in range(3):
            coarse_view = [1] * 6
            coarse_view[axis] = sizes[axis]
            fine_view = [1] * 6
            fine_view[3 + axis] = sizes[3 + axis]
            coarse = torch.arange(sizes[axis], device=device).view(coarse_view)
            fine = torch.arange(sizes[3 + axis], device=device).view(fine_view)
            indices.append((coarse * self.squeeze[axis] + fine).expand(sizes).reshape(-1))
        return torch.stack(indices)

    def forward(self) -> torch.Tensor:
        """(1, N, C) encodings in voxel raster order."""
        device = self.projection.weight.device
        half = self.axis_tables[0].embedding_dim
        indices = self.table_indices(device)
        encoding = self.projection.bias
        for axis, table in enumerate(self.axis_tables):
            # project each table once, then gather: Linear(concat) = sum of per-axis products
            weight = self.projection.weight[:, axis * half:(axis + 1) * half]
            encoding = encoding + (table.weight @ weight.t())[indices[axis]]
        return encoding.unsqueeze(0)
