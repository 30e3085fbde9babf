"""Point-cloud reconstruction metrics: accuracy, completion, normal consistency, PCA normals and
point-to-point ICP. Clouds are (N, 3) arrays (numpy or torch, any float dtype; computed in float64,
in the clouds' units, e.g. metres); results are Python floats or numpy arrays.

The protocol (as in Spann3R's evaluation and the NICE-SLAM / NeuralRecon family before it):
  - accuracy:   distance from every predicted point to its nearest ground-truth point (mean, median);
  - completion: distance from every ground-truth point to its nearest predicted point (mean, median);
  - normal consistency |n_gt . n_pred| over the same nearest-neighbour pairs: NC1 along the accuracy
    pairs, NC2 along the completion pairs (mean, median); normals are unoriented, hence the |.|;
  - before scoring, the prediction may be refined onto the ground truth by point-to-point ICP and the
    normals of both clouds are estimated by PCA over their k nearest neighbours.
Normals (`estimate_normals`): the eigenvector of the smallest eigenvalue of the covariance of the
point and its k - 1 nearest neighbours (k = 30 as Open3D's default KNN search), sign arbitrary;
fewer than 3 points give (0, 0, 1). ICP (`icp_point_to_point`) follows Open3D's registration_icp
with TransformationEstimationPointToPoint: nearest target point within max_distance for every source
point, a rigid fit (Kabsch / Umeyama without scale), repeated until fitness and inlier RMSE change by
less than relative_fitness and relative_rmse, at most max_iteration times.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Optional, Tuple

import numpy as np
from scipy.spatial import cKDTree

NORMAL_NEIGHBOURS = 30  # Open3D's default estimate_normals search: KDTreeSearchParamKNN(knn=30)
NORMAL_CHUNK = 65536  # points per batch of covariance eigen-decompositions
COMPLETION_RATIO_THRESHOLD = 0.05  # metres in the original's completion_ratio


def as_points(points, name: str = "points") -> np.ndarray:
    """(N, 3) float64 numpy array from a numpy array or torch tensor; ValueError for another shape or N = 0."""
    if hasattr(points, "detach"):
        points = points.detach().cpu().numpy()
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 3 or len(array) == 0:
        raise ValueError(f"{name}: expected a non-empty (N, 3) point cloud, got shape {array.shape}")
    return array


def transform_points(points, transformation: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid transformation to points (N, 3) -> (N, 3)."""
    points = as_points(points)
    return points @ transformation[:3, :3].T + transformation[:3, 3]


@dataclasses.dataclass(frozen=True)
class NearestNeighbourScore:
    """Nearest-neighbour distances of one direction (mean, median) and, when normals were given, the
    normal consistency |n . n'| over the same pairs (mean, median; None without normals)."""

    mean: float
    median: float
    normal_mean: Optional[float] = None
    normal_median: Optional[float] = None


def _directional_score(query, reference, query_normals, reference_normals, workers: int) -> NearestNeighbourScore:
    query, reference = as_points(query, "query cloud"), as_points(reference, "reference cloud")
    distances, index = cKDTree(reference).query(query, workers=workers)
    if query_normals is None or reference_normals is None:
        return NearestNeighbourScore(float(np.mean(distances)), float(np.median(distances)))
    dots = np.abs(np.sum(as_points(query_normals, "normals")
                         * as_points(reference_normals, "normals")[index], axis=-1))
    return NearestNeighbourScore(float(np.mean(distances)), float(np.median(distances)),
                                 float(np.mean(dots)), float(np.median(dots)))


def accuracy(gt_points, pred_points, gt_normals=None, pred_normals=None, workers: int = 1) -> NearestNeighbourScore:
    """Distances from each predicted point (M, 3) to the ground truth (N, 3); normal consistency NC1."""
    return _directional_score(pred_points, gt_points, pred_normals, gt_normals, workers)


def completion(gt_points, pred_points, gt_normals=None, pred_normals=None, workers: int = 1) -> NearestNeighbourScore:
    """Distances from each ground-truth point (N, 3) to the prediction (M, 3); normal consistency NC2."""
    return _directional_score(gt_points, pred_points, gt_normals, pred_normals, workers)


def completion_ratio(gt_points, pred_points, threshold: float = COMPLETION_RATIO_THRESHOLD, workers: int = 1) -> float:
    """Fraction of ground-truth points whose nearest predicted point is closer than threshold."""
    distances, _ = cKDTree(as_points(pred_points, "pred_points")).query(as_points(gt_points, "gt_points"),
                                                                         workers=workers)
    return float(np.mean(distances < threshold))


def estimate_normals(points, neighbours: int = NORMAL_NEIGHBOURS, workers: int = 1) -> np.ndarray:
    """Unit normals (N, 3) by PCA over each point's `neighbours` nearest points (itself included)."""
    points = as_points(points)
    k = min(neighbours, len(points))
    if k < 3:
        return np.tile(np.array([0.0, 0.0, 1.0]), (len(points), 1))
    _, index = cKDTree(points).query(points, k=k, workers=workers)
    normals = np.empty_like(points)
    for start in range(0, len(points), NORMAL_CHUNK):
        patch = points[index[start:start + NORMAL_CHUNK]]  # (n, k, 3)
        centred = patch - patch.mean(axis=1, keepdims=True)
        covariance = np.einsum("nki,nkj->nij", centred, centred) / k
        normals[start:start + NORMAL_CHUNK] = np.linalg.eigh(covariance)[1][:, :, 0]
    return normals


def rigid_fit(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 4x4 rotation + translation minimising Σ ‖R s_i + t - t_i‖² for paired points (N, 3) (Kabsch)."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    covariance = (target - target_mean).T @ (source - source_mean) / len(source)
    u, _, vt = np.linalg.svd(covariance)
    correction = np.diag([1.0, 1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    transformation = np.eye(4)
    transformation[:3, :3] = u @ correction @ vt
    transformation[:3, 3] = target_mean - transformation[:3, :3] @ source_mean
    return transformation


@dataclasses.dataclass(frozen=True)
class IcpResult:
    """transformation (4, 4) maps the source onto the target; fitness = share of source points with a
    target point within max_distance; inlier_rmse over those pairs (0 without any); iterations run."""

    transformation: np.ndarray
    fitness: float
    inlier_rmse: float
    iterations: int


def _correspondences(tree: cKDTree, points: np.ndarray, max_distance: float, workers: int
                     ) -> Tuple[np.ndarray, np.ndarray, float, float]:
    """Source indices, target indices, fitness and inlier RMSE of the pairs closer than max_distance."""
    distances, index = tree.query(points, distance_upper_bound=max_distance, workers=workers)
    found = np.flatnonzero(np.isfinite(distances))
    if len(found) == 0:
        return found, found, 0.0, 0.0
    rmse = math.sqrt(float(np.mean(distances[found] ** 2)))
    return found, index[found], len(found) / len(points), rmse


def icp_point_to_point(
    source, target, max_distance: float, init: Optional[np.ndarray] = None, max_iteration: int = 30,
    relative_fitness: float = 1e-6, relative_rmse: float = 1e-6, workers: int = 1,
) -> IcpResult:
    """Rigidly register source (N, 3) onto target (M, 3), starting from init (4, 4; identity)."""
    if not max_distance > 0:
        raise ValueError(f"icp_point_to_point: max_distance must be > 0, got {max_distance}")
    source, target = as_points(source, "source"), as_points(target, "target")
    transformation = np.eye(4) if init is None else np.asarray(init, dtype=np.float64)
    current = transform_points(source, transformation)
    tree = cKDTree(target)
    pairs_source, pairs_target, fitness, rmse = _correspondences(tree, current, max_distance, workers)
    iterations = 0
    while iterations < max_iteration:
        iterations += 1
        update = rigid_fit(current[pairs_source], target[pairs_target]) if len(pairs_source) else np.eye(4)
        transformation = update @ transformation
        current = transform_points(current, update)
        previous = (fitness, rmse)
        pairs_source, pairs_target, fitness, rmse = _correspondences(tree, current, max_distance, workers)
        if abs(previous[0] - fitness) < relative_fitness and abs(previous[1] - rmse) < relative_rmse:
            break
    return IcpResult(transformation, fitness, rmse, iterations)


def reconstruction_metrics(
    pred_points, gt_points, icp_max_distance: Optional[float] = None, normal_neighbours: int = NORMAL_NEIGHBOURS,
    workers: int = 1,
) -> Dict[str, float]:
    """Score a predicted cloud (M, 3) against the ground truth (N, 3), both in the same frame and units.

    icp_max_distance: refine the prediction onto the GT by ICP first (Spann3R: 0.1 m; 100 for DTU's mm);
    None skips it. Returns accuracy, accuracy_median, completion, completion_median, chamfer
    ((accuracy + completion) / 2), nc1, nc1_median, nc2, nc2_median, and icp_fitness, icp_rmse with ICP.
    """
    pred, gt = as_points(pred_points, "pred_points"), as_points(gt_points, "gt_points")
    out = {}
    if icp_max_distance is not None:
        icp = icp_point_to_point(pred, gt, icp_max_distance, workers=workers)
        pred = transform_points(pred, icp.transformation)
        out.update(icp_fitness=icp.fitness, icp_rmse=icp.inlier_rmse)
    pred_normals = estimate_normals(pred, normal_neighbours, workers)
    gt_normals = estimate_normals(gt, normal_neighbours, workers)
    acc = accuracy(gt, pred, gt_normals, pred_normals, workers)
    comp = completion(gt, pred, gt_normals, pred_normals, workers)
    out.update(accuracy=acc.mean, accuracy_median=acc.median, completion=comp.mean, completion_median=comp.median,
               chamfer=(acc.mean + comp.mean) / 2, nc1=acc.normal_mean, nc1_median=acc.normal_median,
               nc2=comp.normal_mean, nc2_median=comp.normal_median)
    return out
