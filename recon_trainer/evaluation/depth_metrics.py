"""Relative-depth metrics: least-squares scale-and-shift alignment, δ>1.25, AbsRel and WHDR.

The protocol of MiDaS (Ranftl et al.) for models that predict disparity (inverse depth) up to an
unknown scale and shift: align the prediction to the ground-truth disparity by least squares on the
valid pixels, clamp the aligned disparity at 1 / depth cap, invert it to depth and score that depth.
Tensors in; aligned maps come back as tensors, metrics as Python floats (NaN when nothing is valid).
"""
from __future__ import annotations

import math
from typing import Tuple

import torch

ORDINAL_CLOSER = -1  # ordinal pair relation: point A is closer than B (larger disparity at A)
ORDINAL_FARTHER = 1  # point A is farther than B (smaller disparity at A)


def align_scale_shift(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per batch element the (scale, shift) minimising Σ_mask (scale * pred + shift - target)².

    pred, target, mask: (B, *S); mask bool. Returns scale, shift: (B,) in pred's dtype,
    differentiable with respect to pred and target. The closed-form solution of the 2x2 normal
    equations, written in centred form (scale = cov(pred, target) / var(pred), shift = mean(target) -
    scale * mean(pred)) and accumulated in float64. Degenerate systems, with fewer than two valid
    pixels or a prediction that is constant on the mask, give scale 0 and shift = the mean target on
    the mask (0 without valid pixels).
    """
    if pred.shape != target.shape or pred.shape != mask.shape:
        raise ValueError(
            f"align_scale_shift: pred {tuple(pred.shape)}, target {tuple(target.shape)} and mask "
            f"{tuple(mask.shape)} must have the same shape (B, ...)"
        )
    batch = pred.shape[0]
    valid = mask.reshape(batch, -1).bool()
    p = pred.reshape(batch, -1).double()
    t = target.reshape(batch, -1).double()
    weight = valid.double()
    count = weight.sum(1)
    denominator = count.clamp(min=1.0)
    mean_p = (weight * p).sum(1) / denominator
    mean_t = (weight * t).sum(1) / denominator
    centred_p = weight * (p - mean_p[:, None])
    var_p = (centred_p * centred_p).sum(1)
    cov = (centred_p * (t - mean_t[:, None])).sum(1)
    inf = torch.tensor(math.inf, dtype=torch.float64, device=p.device)
    constant = p.detach().where(valid, -inf).amax(1) == p.detach().where(valid, inf).amin(1)
    degenerate = (count < 2) | constant
    scale = torch.where(degenerate, torch.zeros_like(cov), cov / torch.where(degenerate, 1.0, var_p))
    shift = mean_t - scale * mean_p
    return scale.to(pred.dtype), shift.to(pred.dtype)


def aligned_depth_from_gt_disparity(
    pred_disparity: torch.Tensor, gt_disparity: torch.Tensor, mask: torch.Tensor, depth_cap: float = 0.0
) -> torch.Tensor:
    """Depth (H, W) of a relative disparity prediction aligned to a ground-truth disparity.

    pred_disparity, gt_disparity: (H, W); mask: (H, W), pixels where gt_disparity is valid (pixels
    with gt_disparity <= 0 are left out as well). The prediction is aligned to gt_disparity by least
    squares on the mask, clamped to >= 1 / depth_cap (depth_cap <= 0: to the smallest gt disparity on
    the mask, i.e. 1 / the largest gt depth) and inverted. The depth is in the units of 1 / gt_disparity
    and defined on every pixel. Used as it is for datasets whose ground truth is a disparity (e.g.
    ReDWeb), via `aligned_depth_from_disparity` for datasets with metric depth.
    """
    valid = mask.bool() & (gt_disparity > 0)
    scale, shift = align_scale_shift(pred_disparity[None], gt_disparity[None], valid[None])
    aligned = scale[0] * pred_disparity + shift[0]
    if depth_cap > 0:
        min_disparity = torch.tensor(1.0 / depth_cap, dtype=aligned.dtype, device=aligned.device)
    elif bool(valid.any()):
        min_disparity = gt_disparity[valid].min().to(aligned.dtype)
    else:
        raise ValueError("aligned_depth_from_gt_disparity: no valid pixel and no depth_cap to clamp at")
    return 1.0 / aligned.clamp(min=min_disparity)


def aligned_depth_from_disparity(
    pred_disparity: torch.Tensor, gt_depth: torch.Tensor, mask: torch.Tensor, depth_cap: float
) -> torch.Tensor:
    """The MiDaS evaluation depth (H, W): pred_disparity (H, W) least-squares aligned to 1 / gt_depth
    on mask (H, W) (pixels with gt_depth <= 0 are left out), clamped to >= 1 / depth_cap (depth_cap
    <= 0: 1 / the largest gt depth on the mask) and inverted; in gt_depth's units."""
    valid = mask.bool() & (gt_depth > 0)
    gt_disparity = torch.where(valid, 1.0 / gt_depth.clamp(min=1e-12), torch.zeros_like(gt_depth))
    return aligned_depth_from_gt_disparity(pred_disparity, gt_disparity, valid, depth_cap)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of `values` on the boolean `mask` as a float; NaN when the mask is empty."""
    selected = values[mask.bool()]
    return float(selected.double().mean()) if selected.numel() else math.nan


def delta_bad_percent(depth: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, threshold: float = 1.25) -> float:
    """Percentage (0-100) of mask pixels with max(depth / gt, gt / depth) > threshold; depth, gt > 0 on mask."""
    ratio = torch.maximum(depth / gt, gt / depth)
    return 100.0 * _masked_mean((ratio > threshold).double(), mask)


def abs_rel(depth: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of |depth - gt| / gt over the mask pixels (gt > 0 there)."""
    return _masked_mean((depth - gt).abs() / gt, mask)


def whdr_percent(pred_disparity: torch.Tensor, ordinal_pairs: torch.Tensor) -> float:
    """Weighted Human Disagreement Rate with unit weights: % (0-100) of point pairs ordered wrongly.

    pred_disparity: (H, W), larger means closer. ordinal_pairs: (P, 5) integer rows (y_a, x_a, y_b,
    x_b, relation), 0-based pixels; relation -1: A is closer (its disparity should be larger), +1: A is
    farther. Equal predicted disparities count as wrong. NaN without pairs.
    """
    pairs = torch.as_tensor(ordinal_pairs, device=pred_disparity.device).long().reshape(-1, 5)
    if pairs.shape[0] == 0:
        return math.nan
    relation = pairs[:, 4]
    if not bool(((relation == ORDINAL_CLOSER) | (relation == ORDINAL_FARTHER)).all()):
        raise ValueError(f"whdr_percent: ordinal relations must be -1 or +1, got {sorted(set(relation.tolist()))}")
    height, width = pred_disparity.shape
    ys, xs = pairs[:, [0, 2]], pairs[:, [1, 3]]
    if bool(((ys < 0) | (ys >= height) | (xs < 0) | (xs >= width)).any()):
        raise ValueError(f"whdr_percent: an ordinal pair lies outside the {height}x{width} prediction")
    disparity_a = pred_disparity[pairs[:, 0], pairs[:, 1]]
    disparity_b = pred_disparity[pairs[:, 2], pairs[:, 3]]
    correct = torch.where(relation == ORDINAL_CLOSER, disparity_a > disparity_b, disparity_a < disparity_b)
    return 100.0 * float((~correct).double().mean())
