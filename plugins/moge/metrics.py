"""MoGe's evaluation metrics (the semantics of moge/test/metrics.py), per image.

`compute_metrics(pred, gt)` scores one image's predictions of every kind it has against the ground
truth and returns MoGe's nested dict of floats, e.g.
{"points_affine_invariant": {"rel": 0.06, "delta1": 0.95}, "local_points": {...},
 "fov_x": {"mae": 2.1, "deviation": -2.1}, "boundary": {"radius1_f1": ...}}.

Each invariance class is first aligned to the ground truth, the alignment being solved on a 64 x 64
masked-nearest subsample of the valid pixels with weight 1 / GT depth (depth) or 1 / ||GT point||
(points), without truncation (MoGe passes none):

  depth_metric                 as predicted (only when the ground truth is metric)
  depth_scale_invariant        align_depth_scale                  (from depth_metric when absent)
  depth_affine_invariant       align_depth_affine                 (from depth_scale_invariant / depth_metric)
  disparity_affine_invariant   least squares on all valid pixels  (from 1 / depth_scale_invariant / depth_metric);
                               the aligned disparity is clamped at 1 / max GT depth before inversion
  points_metric                align_points_xyz_shift             (only when the ground truth is metric)
  points_scale_invariant       align_points_scale                 (from points_metric)
  points_affine_invariant      align_points_scale_xyz_shift       (from points_scale_invariant / points_metric)
  local_points                 per segmentation segment, align_points_scale_xyz_shift with weight
                               1 / diameter (the segment's largest GT extent) on the raw prediction of
                               the first "points*" key of `pred`; segments with < 10 subsampled pixels
                               are skipped; the mean over segments
  fov_x                        horizontal FOV error in degrees (pred - gt) and its absolute value
  boundary                     boundary F1 at radius 1, 2, 3 on the first aligned depth (metric,
                               scale, affine, disparity order) when the dataset has sharp boundaries

Metrics: rel_depth = mean |d - d*| / d*, delta1_depth = share of max(d*/d, d/d*) < 1.25,
rel_point = mean ||P - P*|| / ||P*||, delta1_point = share of ||P - P*|| < 0.25 min(||P*||, ||P||).
As in MoGe, delta1_depth counts a negative predicted depth as inside the threshold (both ratios are
negative), and depths / points at invalid pixels are never read (they may be NaN or inf).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch

from .alignment import (
    align_affine_lstsq,
    align_depth_affine,
    align_depth_scale,
    align_points_scale,
    align_points_scale_xyz_shift,
    align_points_xyz_shift,
)
from .geometry import intrinsics_to_fov
from .resampling import masked_nearest_resize

ALIGNMENT_SIZE = (64, 64)  # the subsample the alignments are solved on
DELTA1_RATIO = 1.25
DELTA1_POINT_FRACTION = 0.25
MIN_SEGMENT_SAMPLES = 10  # subsampled pixels a segment needs to be scored
BOUNDARY_RADII = (1, 2, 3)
# Relative depth jumps scored by boundary_f1, each weighted by itself: 0.05, 0.0722, ..., 0.25.
BOUNDARY_THRESHOLDS = torch.linspace(0.05, 0.25, 10).tolist()

Metrics = Dict[str, Dict[str, float]]


# ------------------------------------------------------------------ per-pixel metrics


def rel_depth(pred: torch.Tensor, gt: torch.Tensor, eps: float = 1e-6) -> float:
    """Mean relative depth error |pred - gt| / (gt + eps); pred, gt (N,) valid pixels."""
    return ((pred - gt).abs() / (gt + eps)).mean().item()


def delta1_depth(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """Share of pixels with max(gt / pred, pred / gt) < 1.25; pred, gt (N,)."""
    ratio = torch.maximum(gt / pred, pred / gt)
    return (ratio < DELTA1_RATIO).float().mean().item()


def rel_point(pred: torch.Tensor, gt: torch.Tensor, eps: float = 1e-6) -> float:
    """Mean relative point error ||pred - gt|| / (||gt|| + eps); pred, gt (N, 3)."""
    return ((pred - gt).norm(dim=-1) / (gt.norm(dim=-1) + eps)).mean().item()


def delta1_point(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """Share of points with ||pred - gt|| < 0.25 min(||gt||, ||pred||); pred, gt (N, 3)."""
    tolerance = DELTA1_POINT_FRACTION * torch.minimum(gt.norm(dim=-1), pred.norm(dim=-1))
    return ((pred - gt).norm(dim=-1) < tolerance).float().mean().item()


def rel_point_local(pred: torch.Tensor, gt: torch.Tensor, diameter: torch.Tensor) -> float:
    """Mean point error relative to the segment's diameter (a scalar tensor); pred, gt (N, 3)."""
    return ((pred - gt).norm(dim=-1) / diameter).mean().item()


def delta1_point_local(pred: torch.Tensor, gt: torch.Tensor, diameter: torch.Tensor) -> float:
    """Share of points with ||pred - gt|| < 0.25 diameter; pred, gt (N, 3)."""
    return ((pred - gt).norm(dim=-1) < DELTA1_POINT_FRACTION * diameter).float().mean().item()


def boundary_f1(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, radius: int = 1) -> float:
    """Depth-boundary F1 of a predicted depth map against the ground truth, both (H, W), valid
    pixels `mask` (H, W) bool.

    For each interior pixel p (at least `radius` from the image border) and each neighbour q within
    Euclidean distance `radius` (p itself included), with p and q valid, the pair is an edge of a
    map when depth(q) / depth(p) > 1 + t. With the pairs that are edges of both maps (TP), of the
    ground truth (G) and of the prediction (P), F1(t) = 2 (TP/G)(TP/P) / (TP/G + TP/P), each
    denominator clamped at 1e-12; the result is the mean of F1(t) over the thresholds t in
    BOUNDARY_THRESHOLDS weighted by t.
    """
    height, width = mask.shape[-2:]
    if height <= 2 * radius or width <= 2 * radius:
        raise ValueError(f"boundary_f1: a {height}x{width} map has no pixel {radius} away from its border")
    inner = (slice(radius, height - radius), slice(radius, width - radius))
    pred_center, gt_center, mask_center = pred[inner], gt[inner], mask[inner]
    counts = torch.zeros(3, len(BOUNDARY_THRESHOLDS), dtype=torch.float64, device=pred.device)  # TP, G, P
    ratios = torch.tensor([1 + t for t in BOUNDARY_THRESHOLDS], dtype=pred.dtype, device=pred.device)[:, None, None]
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy > radius * radius + 1e-5:
                continue
            shifted = (slice(radius + dy, height - radius + dy), slice(radius + dx, width - radius + dx))
            valid = mask_center & mask[shifted]
            pred_edge = (pred[shifted] / pred_center > ratios) & valid
            gt_edge = (gt[shifted] / gt_center > ratios) & valid
            counts += torch.stack([(pred_edge & gt_edge).sum((1, 2)), gt_edge.sum((1, 2)), pred_edge.sum((1, 2))])
    true_positives, gt_edges, pred_edges = counts
    ratio_gt = true_positives / gt_edges.clamp_min(1e-12)
    ratio_pred = true_positives / pred_edges.clamp_min(1e-12)
    f1 = 2 * ratio_gt * ratio_pred / (ratio_gt + ratio_pred).clamp_min(1e-12)
    weights = torch.tensor(BOUNDARY_THRESHOLDS, dtype=torch.float64, device=pred.device)
    return ((f1 * weights).sum() / weights.sum()).item()


# ------------------------------------------------------------------ one image


def mean_of_dicts(dicts: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """Key-wise mean of nested dicts of floats (MoGe's key_average): each leaf present in any dict
    is averaged over the dicts where it is present and not NaN (NaN when it never is); keys sorted."""
    leaves: Dict[tuple, List[float]] = {}
    for d in dicts:
        for path, value in flatten_metrics(d, separator=None).items():
            leaves.setdefault(path, [])
            if not math.isnan(value):
                leaves[path].append(value)
    result: Dict[str, Any] = {}
    for path in sorted(leaves):
        values = leaves[path]
        node = result
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = sum(values) / len(values) if values else math.nan
    return result


def flatten_metrics(nested: Mapping[str, Any], separator: Optional[str] = "/") -> Dict[Any, float]:
    """{"a": {"b": 1.0}} -> {"a/b": 1.0} (separator None: tuple keys ("a", "b"))."""
    flat: Dict[Any, float] = {}

    def visit(node: Mapping[str, Any], prefix: tuple) -> None:
        for key, value in node.items():
            if isinstance(value, Mapping):
                visit(value, prefix + (key,))
            else:
                path = prefix + (key,)
                flat[path if separator is None else separator.join(path)] = float(value)

    visit(nested, ())
    return flat


def _first(pred: Mapping[str, torch.Tensor], keys: Sequence[str]) -> Optional[torch.Tensor]:
    return next((pred[key] for key in keys if key in pred), None)


def compute_metrics(pred: Mapping[str, torch.Tensor], gt: Mapping[str, Any]) -> Metrics:
    """MoGe's metrics of one image (module doc).

    pred: any of points_metric / points_scale_invariant / points_affine_invariant (H, W, 3),
        depth_metric / depth_scale_invariant / depth_affine_invariant / disparity_affine_invariant
        (H, W), intrinsics (3, 3) normalised; other keys are ignored (the dict order decides which
        point map local_points uses).
    gt (MoGe's sample keys): depth (H, W), depth_mask (H, W) bool (valid pixels, at least one),
        points (H, W, 3), intrinsics (3, 3) normalised, is_metric, has_sharp_boundary, and
        optionally segmentation_mask (H, W) int with segmentation_labels {name: id}.
    Returns {kind: {metric: value}} with the kinds the predictions allow.
    """
    mask, gt_depth, gt_points = gt["depth_mask"], gt["depth"], gt["points"]
    lr_mask, lr_index = masked_nearest_resize(mask=mask, size=ALIGNMENT_SIZE, return_index=True)

    def subsample(x: torch.Tensor) -> torch.Tensor:
        """x (H, W[, C]) at the valid pixels of the 64 x 64 subsample: (n[, C])."""
        return x[lr_index][lr_mask]

    def depth_scores(depth: torch.Tensor) -> Dict[str, float]:
        return {"rel": rel_depth(depth[mask], gt_depth[mask]), "delta1": delta1_depth(depth[mask], gt_depth[mask])}

    def point_scores(points: torch.Tensor) -> Dict[str, float]:
        return {"rel": rel_point(points[mask], gt_points[mask]), "delta1": delta1_point(points[mask], gt_points[mask])}

    metrics: Metrics = {}
    aligned_depths: List[torch.Tensor] = []  # in order of preference for the boundary F1
    is_metric = bool(gt["is_metric"])
    gt_depth_lr = subsample(gt_depth)
    gt_points_lr = subsample(gt_points)
    point_weight_lr = 1 / gt_points_lr.norm(dim=-1)

    if "depth_metric" in pred and is_metric:
        metrics["depth_metric"] = depth_scores(pred["depth_metric"])
        aligned_depths.append(pred["depth_metric"])

    depth = _first(pred, ("depth_scale_invariant", "depth_metric"))
    if depth is not None:
        scale = align_depth_scale(subsample(depth), gt_depth_lr, 1 / gt_depth_lr)
        depth = depth * scale
        metrics["depth_scale_invariant"] = depth_scores(depth)
        aligned_depths.append(depth)

    depth = _first(pred, ("depth_affine_invariant", "depth_scale_invariant", "depth_metric"))
    if depth is not None:
        scale, shift = align_depth_affine(subsample(depth), gt_depth_lr, 1 / gt_depth_lr)
        depth = depth * scale + shift
        metrics["depth_affine_invariant"] = depth_scores(depth)
        aligned_depths.append(depth)

    if "disparity_affine_invariant" in pred:
        disparity = pred["disparity_affine_invariant"]
    else:
        depth = _first(pred, ("depth_scale_invariant", "depth_metric"))
        disparity = None if depth is None else 1 / depth
    if disparity is not None:
        scale, shift = align_affine_lstsq(disparity[mask], 1 / gt_depth[mask])
        disparity = disparity * scale + shift
        # near-zero aligned disparities would give huge depths: clamp at the smallest GT disparity
        min_disparity = 1 / gt_depth[mask].max().item()
        metrics["disparity_affine_invariant"] = depth_scores(1 / disparity.clamp_min(min_disparity))
        aligned_depths.append(1 / disparity.clamp_min(1e-6))

    if "points_metric" in pred and is_metric:
        points = pred["points_metric"]
        shift = align_points_xyz_shift(subsample(points), gt_points_lr, point_weight_lr)
        metrics["points_metric"] = point_scores(points + shift)

    points = _first(pred, ("points_scale_invariant", "points_metric"))
    if points is not None:
        scale = align_points_scale(subsample(points), gt_points_lr, point_weight_lr)
        metrics["points_scale_invariant"] = point_scores(points * scale)

    points = _first(pred, ("points_affine_invariant", "points_scale_invariant", "points_metric"))
    if points is not None:
        scale, shift = align_points_scale_xyz_shift(subsample(points), gt_points_lr, point_weight_lr)
        metrics["points_affine_invariant"] = point_scores(points * scale + shift)

    points = next((value for key, value in pred.items() if "points" in key), None)
    if points is not None and "segmentation_mask" in gt:
        metrics["local_points"] = _local_point_metrics(
            points, gt_points, mask, gt["segmentation_mask"], gt["segmentation_labels"], lr_mask, lr_index
        )

    if "intrinsics" in pred and "intrinsics" in gt:
        error = torch.rad2deg(intrinsics_to_fov(pred["intrinsics"])[0] - intrinsics_to_fov(gt["intrinsics"])[0])
        metrics["fov_x"] = {"mae": error.abs().mean().item(), "deviation": error.item()}

    if aligned_depths and gt["has_sharp_boundary"]:
        metrics["boundary"] = {
            f"radius{radius}_f1": boundary_f1(aligned_depths[0], gt_depth, mask, radius=radius)
            for radius in BOUNDARY_RADII
        }
    return metrics


def _local_point_metrics(
    pred_points: torch.Tensor,
    gt_points: torch.Tensor,
    mask: torch.Tensor,
    segmentation: torch.Tensor,
    labels: Mapping[str, int],
    lr_mask: torch.Tensor,
    lr_index: tuple,
) -> Dict[str, float]:
    """Mean over the segments (`labels` {name: id} of `segmentation` (H, W)) of the local point
    metrics: each segment's raw prediction aligned by scale and xyz shift (weight 1 / diameter) on
    its pixels of the subsample; {} when no segment has MIN_SEGMENT_SAMPLES subsampled pixels."""
    segmentation_lr = segmentation[lr_index]
    pred_lr, gt_lr = pred_points[lr_index], gt_points[lr_index]
    per_segment = []
    for segment_id in labels.values():
        in_segment_lr = (segmentation_lr == segment_id) & lr_mask
        if in_segment_lr.sum().item() < MIN_SEGMENT_SAMPLES:
            continue
        in_segment = (segmentation == segment_id) & mask
        pred, gt = pred_points[in_segment], gt_points[in_segment]
        diameter = (gt.max(dim=0).values - gt.min(dim=0).values).max()
        gt_samples = gt_lr[in_segment_lr]
        weight = (1 / diameter).expand(gt_samples.shape[0])
        scale, shift = align_points_scale_xyz_shift(pred_lr[in_segment_lr], gt_samples, weight)
        pred = pred * scale + shift
        per_segment.append(
            {"rel": rel_point_local(pred, gt, diameter), "delta1": delta1_point_local(pred, gt, diameter)})
    return mean_of_dicts(per_segment)
