"""Reference for `focal_shift.recover_focal_shift`: the plain per-image solve with scipy's
`least_squares(method='lm')` from shift 0 on the CPU, as MoGe does it (same downsampling, same
objective, same fallback; non-finite points are left out as in the batched version). Slow
and host-synchronous; kept for tests and comparisons only.
"""
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .geometry import normalized_view_plane_uv


def recover_focal_shift_reference(
    points: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    focal: Optional[torch.Tensor] = None,
    downsample_size: Tuple[int, int] = (64, 64),
    ftol: float = 1e-3,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(focal (...), shift (...)) of point maps (..., H, W, 3); the arguments as in
    `focal_shift.recover_focal_shift`. ftol: scipy's relative cost-reduction tolerance (MoGe
    uses 1e-3; pass a small value for a converged optimum)."""
    from scipy.optimize import least_squares

    batch_shape = points.shape[:-3]
    height, width = points.shape[-3:-1]
    flat = points.detach().reshape(-1, height, width, 3)
    size = tuple(downsample_size)
    uv = normalized_view_plane_uv(width, height, dtype=flat.dtype, device=flat.device)
    points_lr = F.interpolate(flat.permute(0, 3, 1, 2), size=size, mode="nearest")
    uv_lr = F.interpolate(uv.permute(2, 0, 1)[None], size=size, mode="nearest")[0]
    points_np = points_lr.permute(0, 2, 3, 1).reshape(flat.shape[0], -1, 3).cpu().double().numpy()
    uv_np = uv_lr.permute(1, 2, 0).reshape(-1, 2).cpu().double().numpy()
    keep = np.isfinite(points_np).all(axis=-1)
    if mask is not None:
        mask_lr = F.interpolate(mask.reshape(-1, 1, height, width).float(), size=size, mode="nearest")
        keep &= mask_lr.reshape(flat.shape[0], -1).cpu().numpy() > 0
    known = None if focal is None else focal.detach().reshape(-1).cpu().double().numpy()

    focals, shifts = [], []
    for index in range(flat.shape[0]):
        xyz, target = points_np[index][keep[index]], uv_np[keep[index]]
        if len(target) < 2:
            focals.append(1.0 if known is None else known[index])
            shifts.append(0.0)
            continue

        def residuals(shift: np.ndarray, xyz=xyz, target=target, index=index) -> np.ndarray:
            proj = xyz[:, :2] / (xyz[:, 2:] + shift[0])
            f = (proj * target).sum() / np.square(proj).sum() if known is None else known[index]
            return (f * proj - target).ravel()

        shift = float(least_squares(residuals, x0=np.zeros(1), ftol=ftol, method="lm").x[0])
        proj = xyz[:, :2] / (xyz[:, 2:] + shift)
        fitted = (proj * target).sum() / np.square(proj).sum() if known is None else known[index]
        focals.append(float(fitted))
        shifts.append(shift)

    options = dict(dtype=points.dtype, device=points.device)
    return (
        torch.tensor(focals, **options).reshape(batch_shape),
        torch.tensor(shifts, **options).reshape(batch_shape),
    )
