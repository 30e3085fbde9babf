"""MoGe training losses (method notes §A.3), with MoGe's signatures so that its loss configs carry over.

Conventions: point maps (..., H, W, 3) in camera axes (z forward); a ground-truth point is known
where all three coordinates are finite (depth NaN = unknown, +inf = sky give non-finite points).
Point-map losses return (loss, misc) with loss per sample of shape (...) (`normal_loss`: a scalar
over everything, as the original) and misc a dict of Python floats for logging;
`affine_invariant_global_loss` also returns its alignment scale (...), detached, which is the
reference of the local losses and the target of `metric_scale_loss`. The per-sample losses take
their mean over all pixels, unknown ones counting with weight 0.
"""
import math
from typing import Callable, Dict, Literal, Optional, Tuple

import torch
import torch.nn.functional as F

from recon_trainer.config import ConfigError

from .alignment import align_points_scale_xyz_shift, align_points_scale_z_shift
from .geometry import harmonic_mean, weighted_mean
from .resampling import masked_nearest_resize

Misc = Dict[str, float]

ANCHOR_TESTS = 64  # random neighbour probes per pixel for the importance weights of patch anchors
MIN_PATCH_POINTS = 32  # patches with fewer valid ground-truth points are dropped


def _smooth(error: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
    """Plain L1 for beta = 0, else the Huber-like 0.5 e²/beta below beta and e - 0.5 beta above."""
    if beta == 0:
        return error
    return torch.where(error < beta, 0.5 * error.square() / beta, error - 0.5 * beta)


def _known(gt: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(gt with unknown vectors replaced by ones, mask (...) of the vectors whose entries are all finite)."""
    mask = torch.isfinite(gt).all(dim=-1)
    return torch.where(mask[..., None], gt, 1), mask


def _vector_angle(v1: torch.Tensor, v2: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Angle (radians) between unnormalised 3-vectors as atan2(|v1 x v2| + eps, v1 . v2)."""
    return torch.atan2(torch.cross(v1, v2, dim=-1).norm(dim=-1) + eps, (v1 * v2).sum(dim=-1))


def _unit_vector_angle(v1: torch.Tensor, v2: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Angle (radians) between directions, from the normalised vectors: the sine is the smaller of
    the two rejection lengths, which keeps precision near 0 and pi."""
    v1, v2 = F.normalize(v1, dim=-1, eps=eps), F.normalize(v2, dim=-1, eps=eps)
    cos = (v1 * v2).sum(dim=-1)
    sin = torch.minimum((v2 - v1 * cos[..., None]).norm(dim=-1), (v1 - v2 * cos[..., None]).norm(dim=-1))
    return torch.atan2(sin + eps, cos)


def affine_invariant_global_loss(
    pred_points: torch.Tensor,
    gt_points: torch.Tensor,
    align_resolution: int = 64,
    beta: float = 0.0,
    trunc: float = 1.0,
    sparsity_aware: bool = False,
) -> Tuple[torch.Tensor, Misc, torch.Tensor]:
    """Point-map L1 after the robust scale + z-shift alignment of the prediction.

    pred_points, gt_points (..., H, W, 3). The scale s and z shift t minimise
    Σ min(trunc, |s P + t - P*|₁ / max(z*, 0.01)) on an align_resolution² masked nearest resize;
    non-positive scales count as failures (s = t = 0, loss 0). The loss is the mean over pixels and
    coordinates of |s P + t - P*| / z* (weights capped at 10x their mean over known pixels), divided
    by the share of known pixels kept by the resize if sparsity_aware. Returns (loss (...), misc
    with 'truncated_error' and 'delta' (relative point error capped at 1 and the share below 1),
    scale (...) detached)."""
    gt_points, mask = _known(gt_points)
    size = (align_resolution, align_resolution)
    pred_lr, gt_lr, mask_lr = masked_nearest_resize(pred_points, gt_points, mask=mask, size=size)
    align_weight = mask_lr.flatten(-2) / gt_lr[..., 2].flatten(-2).clamp_min(1e-2)
    scale, shift = align_points_scale_z_shift(pred_lr.flatten(-3, -2), gt_lr.flatten(-3, -2), align_weight, trunc=trunc)
    valid = scale > 0
    scale, shift = torch.where(valid, scale, 0), torch.where(valid[..., None], shift, 0)
    aligned = scale[..., None, None, None] * pred_points + shift[..., None, None, :]

    weight = (valid[..., None, None] & mask).to(gt_points.dtype) / gt_points[..., 2].clamp_min(1e-5)
    weight = weight.clamp_max(10.0 * weighted_mean(weight, mask, dim=(-2, -1), keepdim=True))
    loss = _smooth((aligned - gt_points).abs() * weight[..., None], beta=beta).mean(dim=(-3, -2, -1))
    if sparsity_aware:
        kept = mask.float().mean(dim=(-2, -1)) / mask_lr.float().mean(dim=(-2, -1))
        loss = loss / (kept + 1e-7)

    error = (aligned.detach() - gt_points).norm(dim=-1) / gt_points[..., 2]
    misc = {
        "truncated_error": weighted_mean(error.clamp_max(1.0), mask).item(),
        "delta": weighted_mean((error < 1).float(), mask).item(),
    }
    return loss, misc, scale.detach()


def _anchor_importance(
    points: torch.Tensor, mask: torch.Tensor, radius_2d: int, radius_3d: torch.Tensor
) -> torch.Tensor:
    """Sampling probabilities (B, H, W) of patch anchors, each image summing to ~1 over `mask`.

    A pixel's weight is 1 / (number of ANCHOR_TESTS random pixels within radius_2d, the same
    offsets for the whole batch, that are known and lie within radius_3d (B, H, W) of it in 3-D),
    so that thin structures are drawn about as often as large surfaces."""
    height, width = points.shape[-3:-1]
    device = points.device
    offset_i = torch.randint(-radius_2d, radius_2d + 1, (height, width, ANCHOR_TESTS), device=device)
    offset_j = torch.randint(-radius_2d, radius_2d + 1, (height, width, ANCHOR_TESTS), device=device)
    test_i = torch.arange(height, device=device)[:, None, None] + offset_i
    test_j = torch.arange(width, device=device)[None, :, None] + offset_j
    inside = (test_i >= 0) & (test_i < height) & (test_j >= 0) & (test_j < width)
    test_i, test_j = test_i.clamp(0, height - 1), test_j.clamp(0, width - 1)
    test_known = inside & mask[..., test_i, test_j]  # (B, H, W, tests)
    distance = (points[..., test_i, test_j, :] - points[..., None, :]).norm(dim=-1)
    neighbours = ((distance <= radius_3d[..., None]) & test_known).float().sum(dim=-1)
    weight = torch.where(mask, 1 / neighbours.clamp_min(1), 0)
    return weight / weight.sum(dim=(-2, -1), keepdim=True).add(1e-7)


def _anchor_uniform(mask: torch.Tensor) -> torch.Tensor:
    """Sampling probabilities (B, H, W) uniform over each image's known pixels (MoGe-1's sampling)."""
    weight = mask.float()
    return weight / weight.sum(dim=(-2, -1), keepdim=True).add(1e-7)


def affine_invariant_local_loss(
    pred_points: torch.Tensor,
    gt_points: torch.Tensor,
    focal: torch.Tensor,
    global_scale: Optional[torch.Tensor],
    level: Literal[4, 16, 64],
    align_resolution: int = 32,
    num_patches: int = 16,
    beta: float = 0.0,
    trunc: float = 1.0,
    sparsity_aware: bool = False,
    anchor_sampling: Literal["importance", "uniform"] = "importance",
) -> Tuple[torch.Tensor, Misc]:
    """Multi-scale local geometry loss on random patches, each aligned by its own scale + 3-D shift.

    pred_points, gt_points (..., H, W, 3); focal (...) the ground-truth focal relative to the image
    diagonal, 1/sqrt(1/fx² + 1/fy²) of the normalised intrinsics; global_scale (...) from
    `affine_invariant_global_loss` or None. num_patches·B anchors are drawn among known pixels with
    probabilities from `anchor_sampling` ('importance': the current MoGe code; 'uniform': MoGe-1)
    using the global torch RNG. A patch is the (2r+1)² window, r = ceil(0.5/level·diagonal in
    pixels), restricted to known points within radius 0.5/level/focal·z*_anchor of the anchor's
    ground-truth point; patches with fewer than MIN_PATCH_POINTS points are dropped. Each patch is
    aligned with `align_points_scale_xyz_shift` on an align_resolution² masked nearest resize with
    weights 1/radius and truncation `trunc`; patches whose scale is not within (0.1, 10) x the
    global scale (or not positive without one) count zero. Patch loss: mean of |s p + t - p*| /
    max(z*, 0.1·harmonic mean of the image's z*); the loss of a sample is the sum over its patches
    divided by num_patches. Returns (loss (...), misc with 'truncated_error' and 'delta' relative to
    the radius) or (0, {}) when no patch is kept."""
    device, dtype = pred_points.device, pred_points.dtype
    *batch_shape, height, width, _ = pred_points.shape
    batch_size = math.prod(batch_shape)
    gt_points, gt_mask = _known(gt_points)
    pred_points, gt_points = pred_points.reshape(-1, height, width, 3), gt_points.reshape(-1, height, width, 3)
    gt_mask, focal = gt_mask.reshape(-1, height, width), focal.reshape(-1)
    if global_scale is not None:
        global_scale = global_scale.reshape(-1)

    # Anchors.
    radius_2d = math.ceil(0.5 / level * math.sqrt(height ** 2 + width ** 2))
    if anchor_sampling == "importance":
        radius_3d = 0.5 / level / focal[:, None, None] * gt_points[..., 2]
        probabilities = _anchor_importance(gt_points, gt_mask, radius_2d, radius_3d)
    elif anchor_sampling == "uniform":
        probabilities = _anchor_uniform(gt_mask)
    else:
        raise ConfigError(f"anchor_sampling: expected 'importance' or 'uniform', got {anchor_sampling!r}")
    known = torch.nonzero(gt_mask, as_tuple=True)
    drawn = torch.multinomial(probabilities[known], num_patches * batch_size, replacement=True)
    patch_batch, anchor_i, anchor_j = (index[drawn] for index in known)

    # Patches: (P, 2r+1, 2r+1) pixel grids around the anchors.
    offsets = torch.arange(-radius_2d, radius_2d + 1, device=device)
    patch_i = anchor_i[:, None, None] + offsets[None, :, None]
    patch_j = anchor_j[:, None, None] + offsets[None, None, :]
    patch_mask = (patch_i >= 0) & (patch_i < height) & (patch_j >= 0) & (patch_j < width)
    patch_i, patch_j = patch_i.clamp(0, height - 1), patch_j.clamp(0, width - 1)
    pixel = (patch_batch[:, None, None], patch_i, patch_j)
    gt_anchor = gt_points[patch_batch, anchor_i, anchor_j]  # (P, 3)
    radius_3d = 0.5 / level / focal[patch_batch] * gt_anchor[:, 2]  # (P,)
    gt_patch = gt_points[pixel]
    patch_mask &= gt_mask[pixel]
    patch_mask &= (gt_patch - gt_anchor[:, None, None, :]).norm(dim=-1) <= radius_3d[:, None, None]

    kept = patch_mask.sum(dim=(-2, -1)) >= MIN_PATCH_POINTS
    if not kept.any():
        return torch.tensor(0.0, dtype=dtype, device=device), {}
    patch_batch, patch_mask, gt_patch, radius_3d = patch_batch[kept], patch_mask[kept], gt_patch[kept], radius_3d[kept]
    pred_patch = pred_points[patch_batch[:, None, None], patch_i[kept], patch_j[kept]]

    # Per-patch alignment.
    size = (align_resolution, align_resolution)
    pred_lr, gt_lr, mask_lr = masked_nearest_resize(pred_patch, gt_patch, mask=patch_mask, size=size)
    align_weight = mask_lr.flatten(-2) / radius_3d[:, None].add(1e-7)
    scale, shift = align_points_scale_xyz_shift(
        pred_lr.flatten(-3, -2), gt_lr.flatten(-3, -2), align_weight, trunc=trunc
    )
    if global_scale is not None:
        reference = global_scale[patch_batch]
        ratio = scale / reference
        patch_valid = (ratio > 0.1) & (ratio < 10.0) & (reference > 0)
    else:
        patch_valid = scale > 0
    scale, shift = torch.where(patch_valid, scale, 0), torch.where(patch_valid[:, None], shift, 0)
    patch_mask = patch_mask & patch_valid[:, None, None]
    aligned = scale[:, None, None, None] * pred_patch + shift[:, None, None, :]

    # Loss.
    depth_floor = 0.1 * harmonic_mean(gt_points[..., 2], gt_mask, dim=(-2, -1))  # (B,)
    weight = patch_mask.to(gt_patch.dtype) / gt_patch[..., 2].clamp_min(depth_floor[patch_batch, None, None])
    patch_loss = _smooth((aligned - gt_patch).abs() * weight[..., None], beta=beta).mean(dim=(-3, -2, -1))
    if sparsity_aware:
        share = patch_mask.float().mean(dim=(-2, -1)) / mask_lr.float().mean(dim=(-2, -1))
        patch_loss = patch_loss / (share + 1e-7)
    loss = torch.zeros(batch_size, dtype=dtype, device=device).index_add(0, patch_batch, patch_loss) / num_patches

    error = (aligned.detach() - gt_patch).norm(dim=-1) / radius_3d[:, None, None]
    misc = {
        "truncated_error": weighted_mean(error.clamp_max(1), patch_mask).item(),
        "delta": weighted_mean((error < 1).float(), patch_mask).item(),
    }
    return loss.reshape(batch_shape), misc


def _cell_triangles(points: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """The four triangle normals (..., H-1, W-1, 3) of each 2x2 cell of a map (..., H, W, 3), in the
    order up x left, left x down, down x right, right x up; each is the cross product of the edges
    from the corner opposite to the named one."""
    up_left, up_right = points[..., :-1, :-1, :], points[..., :-1, 1:, :]
    down_left, down_right = points[..., 1:, :-1, :], points[..., 1:, 1:, :]
    corners = ((up_right, down_left, down_right), (up_left, down_right, up_right),
               (down_left, up_right, up_left), (down_right, up_left, down_left))
    return tuple(torch.cross(a - apex, b - apex, dim=-1) for a, b, apex in corners)


def _cell_triangle_masks(mask: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """Whether all three corners of each of `_cell_triangles`' triangles are known; mask (..., H, W)."""
    up_left, up_right, down_left, down_right = (
        mask[..., :-1, :-1], mask[..., :-1, 1:], mask[..., 1:, :-1], mask[..., 1:, 1:]
    )
    return (up_right & down_left & down_right, up_left & down_right & up_right,
            down_left & up_right & up_left, down_right & up_left & down_left)


def normal_loss(points: torch.Tensor, gt_points: torch.Tensor) -> Tuple[torch.Tensor, Misc]:
    """MoGe-1's normal term: per 2x2 cell the angles between the four predicted and ground-truth
    triangle normals, clamped to [1°, 90°], smoothed with beta 3°, counted where the three corners
    are known; mean over everything (a scalar) divided by 4·max(H, W)."""
    gt_points, mask = _known(gt_points)
    min_angle, max_angle, beta = math.radians(1), math.radians(90), math.radians(3)
    terms = [
        known * _smooth(_vector_angle(pred, gt).clamp(min_angle, max_angle), beta=beta)
        for pred, gt, known in zip(_cell_triangles(points), _cell_triangles(gt_points), _cell_triangle_masks(mask))
    ]
    loss = terms[0] + terms[1] + terms[2] + terms[3]
    return loss.mean() / (4 * max(points.shape[-3:-1])), {}


def edge_loss(points: torch.Tensor, gt_points: torch.Tensor) -> Tuple[torch.Tensor, Misc]:
    """MoGe-2's normal term: the angles between predicted and ground-truth differences of vertical
    and horizontal neighbours, clamped to [0.1°, 90°], smoothed with beta 3°, counted where both
    points are known; per sample (...) (mean vertical + mean horizontal) / (2·max(H, W))."""
    gt_points, mask = _known(gt_points)
    min_angle, max_angle, beta = math.radians(0.1), math.radians(90), math.radians(3)

    def term(dim: int) -> torch.Tensor:
        """Mean smoothed angle of the differences between neighbours along point-map dim -3 or -2."""
        n = points.shape[dim]
        pred_diff = points.narrow(dim, 0, n - 1) - points.narrow(dim, 1, n - 1)
        gt_diff = gt_points.narrow(dim, 0, n - 1) - gt_points.narrow(dim, 1, n - 1)
        known = mask.narrow(dim + 1, 0, n - 1) & mask.narrow(dim + 1, 1, n - 1)
        angle = _vector_angle(pred_diff, gt_diff).clamp(min_angle, max_angle)
        return (known * _smooth(angle, beta=beta)).mean(dim=(-2, -1))

    return (term(-3) + term(-2)) / (2 * max(points.shape[-3:-1])), {}


def mask_l2_loss(
    pred_mask: torch.Tensor, gt_mask_pos: torch.Tensor, gt_mask_neg: torch.Tensor
) -> Tuple[torch.Tensor, Misc]:
    """MoGe-1's mask term: mean over (H, W) of neg·m² + pos·(1 - m)²; pred_mask (..., H, W), pos =
    known finite ground truth, neg = sky (both bool); other pixels are not supervised."""
    loss = (gt_mask_neg.to(pred_mask.dtype) * pred_mask.square()
            + gt_mask_pos.to(pred_mask.dtype) * (1 - pred_mask).square())
    return loss.mean(dim=(-2, -1)), {}


def mask_bce_loss(
    pred_mask_prob: torch.Tensor, gt_mask_pos: torch.Tensor, gt_mask_neg: torch.Tensor
) -> Tuple[torch.Tensor, Misc]:
    """MoGe-2's mask term: mean over (H, W) of the binary cross-entropy of the probability against
    pos, counted on pos | neg; pred_mask_prob (..., H, W) in [0, 1]."""
    bce = F.binary_cross_entropy(pred_mask_prob, gt_mask_pos.to(pred_mask_prob.dtype), reduction="none")
    return ((gt_mask_pos | gt_mask_neg) * bce).mean(dim=(-2, -1)), {}


def metric_scale_loss(scale_pred: torch.Tensor, scale_gt: torch.Tensor) -> Tuple[torch.Tensor, Misc]:
    """(log ŝ - log s*)² per sample (...), 0 where s* <= 0 (failed alignment or no metric scale)."""
    valid = scale_gt > 0
    target = torch.where(valid, scale_gt, 1).log()
    return torch.where(valid, (scale_pred.log() - target).square(), 0), {}


def normal_map_loss(pred_normal: torch.Tensor, gt_normal: torch.Tensor) -> Tuple[torch.Tensor, Misc]:
    """Mean over (H, W) of the squared angle between predicted and ground-truth normals (..., H, W, 3),
    counted where the ground-truth normal is finite."""
    gt_normal, mask = _known(gt_normal)
    return (mask * _unit_vector_angle(pred_normal, gt_normal).square()).mean(dim=(-2, -1)), {}


LOSS_FUNCTIONS: Dict[str, Callable] = {
    function.__name__: function
    for function in (
        affine_invariant_global_loss,
        affine_invariant_local_loss,
        normal_loss,
        edge_loss,
        mask_l2_loss,
        mask_bce_loss,
        metric_scale_loss,
        normal_map_loss,
    )
}
