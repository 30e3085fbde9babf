"""Camera geometry for MoGe: the view-plane UV grid, focal/FoV conversions, normalised
intrinsics, depth -> point map, point map -> normals, and weighted means.

Conventions (as MoGe's): point maps (..., H, W, 3) in OpenCV camera axes (x right, y down,
z forward); intrinsics (..., 3, 3) NORMALISED (fx, cx in units of the image width, fy, cy of
the height; principal point ~0.5); pixel (i, j) has its centre at ((j + 0.5) / W, (i + 0.5) / H).
"""
import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

Number = Union[int, float]


def normalized_view_plane_uv(
    width: int,
    height: int,
    aspect_ratio: Optional[float] = None,
    dtype: Optional[torch.dtype] = None,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """(H, W, 2) view-plane coordinates (u right, v down) of the pixel centres, in units of the
    half image diagonal: the image corners lie at distance 1 from the centre, so u spans
    ±ar/√(1+ar²)·(W−1)/W and v spans ±1/√(1+ar²)·(H−1)/H, ar = aspect_ratio (default W/H)."""
    ar = width / height if aspect_ratio is None else aspect_ratio
    half_diagonal = math.sqrt(1.0 + ar * ar)
    half_u, half_v = ar / half_diagonal, 1.0 / half_diagonal
    # Pixel-centre coordinates in [-1, 1] of the full image extent: (2k + 1) / n - 1.
    u = (torch.arange(width, dtype=torch.float64, device=device) * 2 + 1) / width - 1
    v = (torch.arange(height, dtype=torch.float64, device=device) * 2 + 1) / height - 1
    grid_v, grid_u = torch.meshgrid(v * half_v, u * half_u, indexing="ij")
    uv = torch.stack([grid_u, grid_v], dim=-1)
    return uv.to(torch.get_default_dtype() if dtype is None else dtype)


def focal_to_fov(focal: torch.Tensor) -> torch.Tensor:
    """Field of view (radians) of a normalised focal length (image extent 1)."""
    return 2 * torch.atan(0.5 / focal)


def fov_to_focal(fov: torch.Tensor) -> torch.Tensor:
    """Normalised focal length (image extent 1) of a field of view in radians."""
    return 0.5 / torch.tan(fov / 2)


def intrinsics_from_focal_center(
    fx: Union[torch.Tensor, Number],
    fy: Union[torch.Tensor, Number],
    cx: Union[torch.Tensor, Number],
    cy: Union[torch.Tensor, Number],
) -> torch.Tensor:
    """(..., 3, 3) matrices [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]; the arguments broadcast
    against each other (tensors or numbers)."""
    tensors = [value for value in (fx, fy, cx, cy) if isinstance(value, torch.Tensor)]
    like = tensors[0] if tensors else torch.zeros(())
    dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
    fx, fy, cx, cy = torch.broadcast_tensors(
        *(torch.as_tensor(value, dtype=dtype, device=like.device) for value in (fx, fy, cx, cy))
    )
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    rows = [fx, zero, cx, zero, fy, cy, zero, zero, one]
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def intrinsics_to_fov(intrinsics: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(fov_x, fov_y) in radians, each (...), of normalised intrinsics (..., 3, 3)."""
    return focal_to_fov(intrinsics[..., 0, 0]), focal_to_fov(intrinsics[..., 1, 1])


def pixel_center_uv(height: int, width: int, dtype=None, device=None) -> torch.Tensor:
    """(H, W, 2) image coordinates in [0, 1] of the pixel centres: ((j + 0.5)/W, (i + 0.5)/H)."""
    u = (torch.arange(width, dtype=torch.float64, device=device) + 0.5) / width
    v = (torch.arange(height, dtype=torch.float64, device=device) + 0.5) / height
    grid_v, grid_u = torch.meshgrid(v, u, indexing="ij")
    uv = torch.stack([grid_u, grid_v], dim=-1)
    return uv.to(torch.get_default_dtype() if dtype is None else dtype)


def depth_to_points(depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Camera-space point map (..., H, W, 3) of a depth map (..., H, W) (z-depth) and normalised
    intrinsics (..., 3, 3): point = depth · K⁻¹ [u, v, 1] at the pixel centres. Where the depth
    is not finite (+inf sky, NaN unknown) the point is not finite either."""
    height, width = depth.shape[-2:]
    uv = pixel_center_uv(height, width, dtype=depth.dtype, device=depth.device)
    fx, fy = intrinsics[..., 0, 0, None, None], intrinsics[..., 1, 1, None, None]
    cx, cy = intrinsics[..., 0, 2, None, None], intrinsics[..., 1, 2, None, None]
    skew = intrinsics[..., 0, 1, None, None]
    y = (uv[..., 1] - cy) / fy
    x = (uv[..., 0] - cx - skew * y) / fx
    return torch.stack([x * depth, y * depth, depth], dim=-1)


def points_to_normals(
    points: torch.Tensor, mask: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Unit normals (..., H, W, 3) of a point map (..., H, W, 3), facing the camera, and where
    they are defined (..., H, W) bool.

    A pixel's normal is the normalised sum of the unit normals of the (up to four) triangles it
    forms with consecutive pairs of its 4-neighbours (up-left, left-down, down-right,
    right-up) whose three points are valid (in `mask`, default: finite). Pixels without any such
    triangle get a zero normal and False."""
    valid = torch.isfinite(points).all(dim=-1)
    if mask is not None:
        valid = valid & mask
    points = torch.where(valid[..., None], points, torch.zeros_like(points))
    # Neighbour offsets (rows, cols) in the order up, left, down, right; consecutive pairs span
    # triangles whose normal up × left etc. points towards the camera in OpenCV axes.
    padded = F.pad(points.movedim(-1, -3), (1, 1, 1, 1)).movedim(-3, -1)
    padded_valid = F.pad(valid, (1, 1, 1, 1))
    height, width = points.shape[-3:-1]

    def neighbour(tensor: torch.Tensor, d_row: int, d_col: int, spatial_dims: int) -> torch.Tensor:
        rows = slice(1 + d_row, 1 + d_row + height)
        cols = slice(1 + d_col, 1 + d_col + width)
        index = (Ellipsis, rows, cols) + (slice(None),) * (spatial_dims - 2)
        return tensor[index]

    offsets = [(-1, 0), (0, -1), (1, 0), (0, 1)]
    edges = [neighbour(padded, r, c, 3) - points for r, c in offsets]
    edge_valid = [neighbour(padded_valid, r, c, 2) for r, c in offsets]
    normal = torch.zeros_like(points)
    defined = torch.zeros_like(valid)
    for k in range(4):
        both = valid & edge_valid[k] & edge_valid[(k + 1) % 4]
        face = F.normalize(torch.cross(edges[k], edges[(k + 1) % 4], dim=-1), dim=-1)
        normal = normal + face * both[..., None]
        defined = defined | both
    return F.normalize(normal, dim=-1), defined


def depth_edges(depth: torch.Tensor, rtol: float, mask: Optional[torch.Tensor] = None,
                kernel_size: int = 3) -> torch.Tensor:
    """(..., H, W) bool: pixels whose kernel_size² neighbourhood (over the pixels in `mask` with
    finite depth) spans a depth range above rtol times their own depth (flying pixels at depth
    discontinuities); for depth (..., H, W) > 0."""
    valid = torch.isfinite(depth)
    if mask is not None:
        valid = valid & mask
    shape = depth.shape
    flat = depth.reshape(-1, 1, *shape[-2:])
    flat_valid = valid.reshape(flat.shape)
    pad = kernel_size // 2
    highest = F.max_pool2d(torch.where(flat_valid, flat, -torch.inf), kernel_size, stride=1, padding=pad)
    lowest = -F.max_pool2d(torch.where(flat_valid, -flat, -torch.inf), kernel_size, stride=1, padding=pad)
    edge = flat_valid & ((highest - lowest) > rtol * flat)
    return edge.reshape(shape)


def weighted_mean(
    x: torch.Tensor,
    w: Optional[torch.Tensor] = None,
    dim=None,
    keepdim: bool = False,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Σ w·x / (Σ w + eps·n) over `dim` (MoGe's form: the eps is added to the mean weight);
    the plain mean when w is None."""
    if w is None:
        return x.mean(dim=dim, keepdim=keepdim)
    w = w.to(x.dtype)
    return (x * w).mean(dim=dim, keepdim=keepdim) / (w.mean(dim=dim, keepdim=keepdim) + eps)


def harmonic_mean(
    x: torch.Tensor,
    w: Optional[torch.Tensor] = None,
    dim=None,
    keepdim: bool = False,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Harmonic mean 1 / mean(1 / (x + eps)) over `dim`; with weights, the weighted mean of the
    reciprocals (weighted_mean) gets eps added before the final reciprocal, as in MoGe."""
    inverse = (x + eps).reciprocal()
    if w is None:
        return inverse.mean(dim=dim, keepdim=keepdim).reciprocal()
    return (weighted_mean(inverse, w, dim=dim, keepdim=keepdim, eps=eps) + eps).reciprocal()
