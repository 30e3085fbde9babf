"""Median shift + median-norm scale alignment of predicted point maps to the ground truth (Spann3R's
test criterion and evaluation, method notes §B.7 steps 2-3).

Everything is per batch sample and over the valid pixels of all T frames jointly:
  1. ground truth is put in camera 0's coordinates (the frame the networks predict in);
  2. shift: the median z of the prediction and the median z of the ground truth are subtracted
     from each (points move along the camera-0 optical axis);
  3. scale: each shifted cloud's scale is the median distance of its points to their per-axis
     median point; the prediction is multiplied by gt_scale / pred_scale (pred_scale clipped to
     [1e-3, 1e3]), so it takes the ground truth's units (metres);
  4. (evaluation only) the ground truth's z shift is added back to both and both are mapped to the
     world frame with camera 0's camera-to-world pose.
Medians are torch.nanmedian's (the lower of the two middle values for an even count), as the
original; the shift and scale carry no gradient. A sample without any valid pixel gets NaN.
"""
from __future__ import annotations

import dataclasses

import torch

from recon_trainer.data.records import transform_points
from recon_trainer_plugins.spann3r.predictions import SequencePredictions

PRED_SCALE_RANGE = (1e-3, 1e3)  # the prediction's median-norm scale is clipped to this range


@dataclasses.dataclass
class ShiftScale:
    """Per-sample alignment parameters (B,): median z shifts and median-norm scales (GT units)."""

    pred_shift_z: torch.Tensor
    gt_shift_z: torch.Tensor
    pred_scale: torch.Tensor
    gt_scale: torch.Tensor

    def apply_to_prediction(self, points: torch.Tensor) -> torch.Tensor:
        """Shift (z) and scale prediction points (B, ..., 3) of the same camera-0 frame as estimated."""
        view = (-1,) + (1,) * (points.ndim - 1)
        shifted = points - _z_only(self.pred_shift_z.view(view))
        return shifted * (self.gt_scale / self.pred_scale).view(view)

    def apply_to_ground_truth(self, points: torch.Tensor) -> torch.Tensor:
        """Subtract the ground truth's median z from points (B, ..., 3)."""
        return points - _z_only(self.gt_shift_z.view((-1,) + (1,) * (points.ndim - 1)))


@dataclasses.dataclass
class AlignedPoints:
    """Spann3R eval.py's clouds, per frame and in the ground truth's world frame.

    points:    (B, T, H, W, 3) aligned prediction (frame k < T - 1 from step k's reference decoder,
               the last frame from the last target decoder), GT units.
    gt_points: (B, T, H, W, 3) ground truth after the round trip through camera 0.
    params:    the alignment applied.
    """

    points: torch.Tensor
    gt_points: torch.Tensor
    params: ShiftScale


def _z_only(values: torch.Tensor) -> torch.Tensor:
    """(..., 1) -> (..., 3) with the values in z and zeros in x, y."""
    return torch.nn.functional.pad(values.unsqueeze(-1), (2, 0)).squeeze(-2)


def points_in_first_camera(gt_points: torch.Tensor, camera_to_world: torch.Tensor) -> torch.Tensor:
    """World points (B, T, H, W, 3) -> camera-0 coordinates with camera_to_world (B, T, 4, 4) OpenCV."""
    return transform_points(torch.linalg.inv(camera_to_world[:, 0]), gt_points)


def _nan_outside(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """values (B, ...) or (B, ..., 3) with NaN where valid (B, ...) is False."""
    mask = valid if values.ndim == valid.ndim else valid[..., None]
    return torch.where(mask, values, torch.full_like(values, float("nan")))


@torch.no_grad()
def median_depth(points: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Median z of points (B, ..., 3) over valid (B, ...) per sample -> (B,)."""
    z = _nan_outside(points[..., 2], valid).reshape(points.shape[0], -1)
    return z.nanmedian(dim=-1).values


@torch.no_grad()
def median_norm_scale(points: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Median distance of the valid points (B, ..., 3) to their per-axis median point -> (B,)."""
    flat = _nan_outside(points, valid).reshape(points.shape[0], -1, 3)
    centre = flat.nanmedian(dim=1, keepdim=True).values
    return (flat - centre).norm(dim=-1).nanmedian(dim=1).values


def estimate_shift_scale(pred_points: torch.Tensor, gt_points: torch.Tensor, valid: torch.Tensor) -> ShiftScale:
    """Alignment of pred_points to gt_points (both (B, T, H, W, 3), same camera-0 frame) over valid
    (B, T, H, W): median z shifts, then the median-norm scales of the shifted clouds."""
    pred_shift, gt_shift = median_depth(pred_points, valid), median_depth(gt_points, valid)
    params = ShiftScale(pred_shift, gt_shift, torch.ones_like(pred_shift), torch.ones_like(gt_shift))
    pred_scale = median_norm_scale(pred_points - _z_only(pred_shift.view(-1, 1, 1, 1, 1)), valid)
    params.pred_scale = pred_scale.clip(*PRED_SCALE_RANGE)
    params.gt_scale = median_norm_scale(params.apply_to_ground_truth(gt_points), valid)
    return params


@torch.no_grad()
def align_to_ground_truth(
    predictions: SequencePredictions, gt_points: torch.Tensor, valid: torch.Tensor, camera_to_world: torch.Tensor
) -> AlignedPoints:
    """Spann3R's evaluation alignment (eval.py with Regr3D_t_ScaleShiftInv(norm_mode=False, gt_scale=True)).

    predictions: camera-0 frame; gt_points (B, T, H, W, 3) world, valid (B, T, H, W) bool,
    camera_to_world (B, T, 4, 4) OpenCV. Both returned clouds are in the world frame, GT units.
    """
    pred, _ = predictions.per_frame()
    gt_cam0 = points_in_first_camera(gt_points, camera_to_world)
    params = estimate_shift_scale(pred, gt_cam0, valid)
    shift_back = _z_only(params.gt_shift_z.view(-1, 1, 1, 1, 1))
    first_pose = camera_to_world[:, 0]
    aligned = transform_points(first_pose, params.apply_to_prediction(pred) + shift_back)
    gt_world = transform_points(first_pose, params.apply_to_ground_truth(gt_cam0) + shift_back)
    return AlignedPoints(aligned, gt_world, params)
