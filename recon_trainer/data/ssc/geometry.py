"""Voxel-grid geometry of semantic scene completion (MonoScene / Symphonies data code, re-derived).

- `voxel_projection`: every voxel of a VoxelRecord projected into a ViewRecord as the originals'
  `vox2pix` does it: the point origin + (index + offset) * voxel_size (offset 0.5: the centre, what
  both originals project) moved by the inverse camera pose, then u = round(fx x / z + cx) with the
  integer-centred K (the records' K minus half a pixel), v likewise; in view: 0 <= u < W,
  0 <= v < H and z > 0. Voxels in raster order: index x * Y * Z + y * Z + z.
- `local_frustums`: MonoScene's local frustums: the image cut into size x size tiles (row-major,
  tile edges at i / size * W and j / size * H), a voxel in a tile's frustum when its projected
  pixel is in the tile, z > 0 and its label is not 255; the tile's class counts.
- `crop_grid` / `scale_grid` / `grid_variant`: the NYU grids of Symphonies' usage guide (the full
  4.8 x 4.8 x 2.88 m volume, a centred 4 x 4 x 2 m crop of it, or the full volume resampled to
  the crop's voxel counts by nearest neighbour).
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np
import torch

from recon_trainer.data.records import IGNORE_LABEL, ViewRecord, VoxelRecord, intrinsics_corner_to_centre, invert_pose

FULL_EXTENT = (4.8, 4.8, 2.88)  # metres, NYU's volume (world x, y, z)
CROP_EXTENT = (4.0, 4.0, 2.0)  # metres, the usage guide's crop
EXTENTS = ("full", "crop", "scale")
_PIXEL_LIMIT = 2.0 ** 30  # projected coordinates are clamped to +-this before rounding (z <= 0 gives inf)

Size = Union[float, Sequence[float]]


def voxel_projection(voxels: VoxelRecord, view: ViewRecord, offset: float = 0.5
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pixels (N, 2) int64 (u, v), depth (N,) float32 camera z in metres, fov_mask (N,) bool) of the
    N = X * Y * Z voxels of one volume in one view (module doc). Computed in float64; pixels of
    voxels behind the camera are clamped to +-2^30 (they are outside the view anyway)."""
    if view.batch_shape or view.intrinsics is None or view.camera_to_world is None:
        raise ValueError("voxel_projection: needs one view (not stacked) with intrinsics and camera_to_world")
    if voxels.labels.dim() != 3:
        raise ValueError("voxel_projection: needs one volume (not stacked)")
    world_to_camera = invert_pose(view.camera_to_world.double())
    rotation, translation = world_to_camera[:3, :3], world_to_camera[:3, 3]
    # the voxels' world coordinates per axis: origin + (index + offset) * size, separable over the grid
    origin, size = voxels.voxel_origin.double(), voxels.voxel_size_xyz().double()
    axes = [origin[a] + (torch.arange(n, dtype=torch.float64) + offset) * size[a]
            for a, n in enumerate(voxels.grid_shape)]
    grids = [axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]]
    x, y, z = (rotation[c, 0] * grids[0] + rotation[c, 1] * grids[1] + rotation[c, 2] * grids[2] + translation[c]
               for c in range(3))
    x, y, z = x.reshape(-1), y.reshape(-1), z.reshape(-1)
    k = intrinsics_corner_to_centre(view.intrinsics.double())
    uv = torch.stack([k[0, 0] * x / z + k[0, 2], k[1, 1] * y / z + k[1, 2]], dim=-1)
    uv = torch.nan_to_num(uv, nan=-1.0).clamp(-_PIXEL_LIMIT, _PIXEL_LIMIT)
    pixels = torch.round(uv).long()  # half to even, as numpy's round
    h, w = view.image_size_hw
    fov = (pixels[:, 0] >= 0) & (pixels[:, 0] < w) & (pixels[:, 1] >= 0) & (pixels[:, 1] < h) & (z > 0)
    return pixels, z.float(), fov


def local_frustums(pixels: torch.Tensor, depth: torch.Tensor, labels: torch.Tensor, image_hw: Tuple[int, int],
                   num_classes: int, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(masks (size * size, X, Y, Z) bool, class_counts (size * size, C) float32) of labels (X, Y, Z)
    whose voxels project to pixels (N, 2) (u, v) at depth (N,) (voxel_projection's raster order);
    tiles row-major over an image of image_hw = (H, W) (module doc). Labels other than 255 must
    be below num_classes."""
    h, w = image_hw
    labels = torch.as_tensor(labels).long()
    flat = labels.reshape(-1)
    known = flat != IGNORE_LABEL
    if known.any() and int(flat[known].max()) >= num_classes:
        raise ValueError(f"local_frustums: label {int(flat[known].max())} is not below num_classes={num_classes}")
    # tile edges computed as the original does: (i / size) * W
    edges_u = torch.tensor([(i * 1.0 / size) * w for i in range(size + 1)], dtype=torch.float64)
    edges_v = torch.tensor([(i * 1.0 / size) * h for i in range(size + 1)], dtype=torch.float64)
    u, v = pixels[:, 0].double(), pixels[:, 1].double()
    column = torch.searchsorted(edges_u, u, right=True) - 1
    row = torch.searchsorted(edges_v, v, right=True) - 1
    inside = (u >= edges_u[0]) & (u < edges_u[-1]) & (v >= edges_v[0]) & (v < edges_v[-1]) & (depth > 0) & known
    tile = torch.where(inside, row * size + column, torch.full_like(row, -1))
    masks = tile[None, :] == torch.arange(size * size)[:, None]
    counts = torch.bincount(tile[inside] * num_classes + flat[inside], minlength=size * size * num_classes)
    return masks.reshape(size * size, *labels.shape), counts.reshape(size * size, num_classes).float()


def grid_shape(extent: Sequence[float], voxel_size: float) -> Tuple[int, int, int]:
    """Voxel counts of an extent (metres per axis) at voxel_size: (120, 120, 72) for the full volume
    at 0.04 m, (50, 50, 25) for the crop at 0.08 m."""
    return tuple(int(round(e / voxel_size)) for e in extent)


def crop_grid(labels: np.ndarray, voxel_origin: np.ndarray, voxel_size: float, shape: Sequence[int],
              from_start: Sequence[bool] = (False, False, False)) -> Tuple[np.ndarray, np.ndarray]:
    """(labels (shape), voxel_origin (3,) float32) of a sub-grid of `shape`: per axis from index 0
    where `from_start`, else centred (start index (n_full - n_crop) // 2); the origin moved by
    start * voxel_size."""
    start = [0 if first else (n - m) // 2 for n, m, first in zip(labels.shape, shape, from_start)]
    if any(s < 0 for s in start):
        raise ValueError(f"crop_grid: crop {tuple(shape)} is larger than the grid {labels.shape}")
    window = tuple(slice(s, s + m) for s, m in zip(start, shape))
    origin = np.asarray(voxel_origin, np.float64) + np.asarray(start, np.float64) * voxel_size
    return np.ascontiguousarray(labels[window]), origin.astype(np.float32)


def scale_grid(labels: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """labels resampled to `shape` by nearest neighbour at the new voxels' centres: new index i takes
    old index floor((i + 0.5) * n_old / n_new) per axis (the grid keeps its origin and extent)."""
    index = [np.minimum(((np.arange(m) + 0.5) * n / m).astype(np.int64), n - 1) for n, m in zip(labels.shape, shape)]
    return np.ascontiguousarray(labels[np.ix_(*index)])


def grid_variant(labels: np.ndarray, voxel_origin: np.ndarray, voxel_size: float, extent: str
                 ) -> Tuple[np.ndarray, np.ndarray, Size]:
    """(labels, voxel_origin (3,) float32, voxel_size) of a full NYU grid (world axes, FULL_EXTENT at
    voxel_size) as the variant `extent`: "full" (unchanged), "crop" (the centred CROP_EXTENT) or
    "scale" (the full volume at the crop's voxel counts; voxel_size per axis, a tuple)."""
    origin = np.asarray(voxel_origin, np.float32)
    if extent == "full":
        return np.ascontiguousarray(labels), origin, float(voxel_size)
    shape = grid_shape(CROP_EXTENT, voxel_size)
    if extent == "crop":
        cropped, moved = crop_grid(labels, origin, voxel_size, shape, from_start=(False, False, True))
        return cropped, moved, float(voxel_size)
    if extent == "scale":
        full = grid_shape(FULL_EXTENT, voxel_size)
        sizes = tuple(float(voxel_size) * n / m for n, m in zip(full, shape))
        return scale_grid(labels, shape), origin, sizes
    raise ValueError(f"grid_variant: extent {extent!r} is not one of {EXTENTS}")
