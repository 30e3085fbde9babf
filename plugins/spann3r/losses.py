"""Spann3R's and DUSt3R's training losses and Spann3R's test criterion (method notes §B.2, §B.5).

Inputs (a batch of B sequences of T frames, H x W pixels):
  predictions      SequencePredictions, camera-0 frame (step k: reference = frame k, target = frame k + 1);
  gt_points        (B, T, H, W, 3) ground-truth points in WORLD coordinates (metres; anything at invalid pixels);
  valid            (B, T, H, W) bool;
  camera_to_world  (B, T, 4, 4) OpenCV camera-to-world poses.

The 2 (T - 1) "terms" are the predictions of a frame, in the original's order: for t = 0 .. T - 1 the
reference prediction of frame t (t < T - 1, name `ref{t}`) then the target prediction of frame t
(t > 0, name `tgt{t}`). Per-pixel error: L21 = Euclidean distance to the ground truth in camera 0's
frame. Means over pixels are over the valid pixels of the whole batch together, as the originals.

Normalisation ('avg_dis'): each sample's prediction is divided by the mean distance to the origin of
its valid points over one prediction per frame (SequencePredictions.per_frame), the ground truth by
the same over all its frames. Spann3R's original divides each sample's distance sum by the valid
count of the WHOLE batch and compares every selected prediction factor with every sample's GT
factor in the scale loss; `batch_quirk=True` reproduces both (identical at B = 1), the default
normalises per sample (as DUSt3R does for pairs).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch

from recon_trainer_plugins.spann3r.alignment import estimate_shift_scale, points_in_first_camera
from recon_trainer_plugins.spann3r.predictions import SequencePredictions

Details = Dict[str, torch.Tensor]
Term = Tuple[str, int, torch.Tensor, torch.Tensor]
DUST3R_ALPHA = 0.2  # DUSt3R's ConfLoss weight of the log-confidence


def _check_inputs(
    predictions: SequencePredictions, gt_points: torch.Tensor, valid: torch.Tensor, camera_to_world: torch.Tensor
) -> None:
    batch, steps, height, width = predictions.ref_points.shape[:4]
    frames = (batch, steps + 1, height, width)
    if gt_points.shape != frames + (3,) or valid.shape != frames or camera_to_world.shape != frames[:2] + (4, 4):
        raise ValueError(
            f"spann3r losses: expected gt_points {frames + (3,)}, valid {frames}, camera_to_world "
            f"{frames[:2] + (4, 4)} for predictions of {steps} steps; got {tuple(gt_points.shape)}, "
            f"{tuple(valid.shape)}, {tuple(camera_to_world.shape)}"
        )


def average_distance_factor(points: torch.Tensor, valid: torch.Tensor, batch_quirk: bool = False) -> torch.Tensor:
    """'avg_dis' normalisation factor (B,): sum of ‖p‖ over the valid points (B, T, H, W, 3) of a
    sample divided by its valid count (batch_quirk: by the valid count of the whole batch), >= 1e-8."""
    distance = torch.where(valid[..., None], points, torch.zeros_like(points)).norm(dim=-1)
    count = valid.sum() if batch_quirk else valid.flatten(1).sum(dim=1)
    return (distance.flatten(1).sum(dim=1) / (count + 1e-8)).clip(min=1e-8)


def _per_sample(factor: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Divide points (B, ...) by factor (B,)."""
    return points / factor.view((-1,) + (1,) * (points.ndim - 1))


def _terms(predictions: SequencePredictions, ref_points: torch.Tensor, tgt_points: torch.Tensor) -> List[Term]:
    """(name, frame, points (B, H, W, 3), conf (B, H, W)) of every prediction, in the original's order."""
    last = predictions.num_frames - 1
    terms = []
    for frame in range(last + 1):
        if frame < last:
            terms.append((f"ref{frame}", frame, ref_points[:, frame], predictions.ref_conf[:, frame]))
        if frame > 0:
            terms.append((f"tgt{frame}", frame, tgt_points[:, frame - 1], predictions.tgt_conf[:, frame - 1]))
    return terms


def _pixel_errors(terms: List[Term], gt_points: torch.Tensor, valid: torch.Tensor) -> List[torch.Tensor]:
    """L21 of each term at the valid pixels of its frame (1-D, batch pixels together)."""
    return [(points[valid[:, t]] - gt_points[:, t][valid[:, t]]).norm(dim=-1) for _, t, points, _ in terms]


def _mean_or_zero(values: torch.Tensor) -> torch.Tensor:
    return values.mean() if values.numel() > 0 else values.new_zeros(())


def _confidence_weighted(
    terms: List[Term], errors: List[torch.Tensor], valid: torch.Tensor, alpha: float
) -> Tuple[torch.Tensor, Details]:
    """Per term mean(C ℓ - α log C) over its valid pixels (0 without any) -> (terms (K,), details)."""
    losses, details = [], {}
    for (name, frame, _, conf), error in zip(terms, errors):
        c = conf[valid[:, frame]]
        losses.append(_mean_or_zero(error * c - alpha * torch.log(c)))
        details[f"regr_{name}"] = _mean_or_zero(error).detach()
        details[f"loss_conf_{name}"] = losses[-1].detach()
    details["loss_regr"] = torch.stack([details[f"regr_{name}"] for name, *_ in terms]).mean()
    details["conf_mean"] = torch.stack([_mean_or_zero(conf[valid[:, t]]).detach() for _, t, _, conf in terms]).mean()
    return torch.stack(losses), details


def _normalised_regression(
    predictions: SequencePredictions, gt_points: torch.Tensor, valid: torch.Tensor, camera_to_world: torch.Tensor,
    batch_quirk: bool,
) -> Tuple[List[Term], List[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Terms of the normalised prediction, their L21 to the normalised camera-0 GT, pred and GT factors (B,)."""
    _check_inputs(predictions, gt_points, valid, camera_to_world)
    gt = points_in_first_camera(gt_points, camera_to_world)
    pred_factor = average_distance_factor(predictions.per_frame()[0], valid, batch_quirk)
    gt_factor = average_distance_factor(gt, valid, batch_quirk)
    terms = _terms(predictions, _per_sample(pred_factor, predictions.ref_points),
                   _per_sample(pred_factor, predictions.tgt_points))
    return terms, _pixel_errors(terms, _per_sample(gt_factor, gt), valid), pred_factor, gt_factor


def scale_loss(pred_factor: torch.Tensor, gt_factor: torch.Tensor, batch_quirk: bool = False) -> torch.Tensor:
    """Spann3R's loss on the normalisation factors (B,): mean of pred - gt over the samples whose
    prediction factor exceeds the GT's (0 when none). batch_quirk: the original's mean of
    |pred_i - gt_j| over those samples i and every sample j."""
    larger = pred_factor > gt_factor
    if not bool(larger.any()):
        return pred_factor.new_zeros(())
    if batch_quirk:
        return (pred_factor[larger][None, :] - gt_factor[:, None]).abs().mean()
    return (pred_factor - gt_factor)[larger].mean()


def spann3r_loss(
    predictions: SequencePredictions, gt_points: torch.Tensor, valid: torch.Tensor, camera_to_world: torch.Tensor,
    alpha: float, batch_quirk: bool = False,
) -> Tuple[torch.Tensor, Details]:
    """ConfLoss_t(Regr3D_t(L21, norm_mode='avg_dis', fix_first=False), alpha) + the scale loss.

    loss_conf = mean over the 2 (T - 1) terms of mean(C ℓ - α log C) times 2 (the original's factor),
    loss_scale = `scale_loss`; returns (loss_conf + loss_scale, details) where details holds detached
    scalars: loss_conf, loss_scale, loss_regr (mean L21 over terms), conf_mean, pred_factor, gt_factor
    (batch means) and per term regr_<term>, loss_conf_<term> (without the factor 2). alpha > 0 is
    given by the caller (Spann3R lowers it from 0.4 to 0.2 over the second half of training).
    """
    if alpha <= 0:
        raise ValueError(f"spann3r_loss: alpha must be > 0, got {alpha}")
    terms, errors, pred_factor, gt_factor = _normalised_regression(
        predictions, gt_points, valid, camera_to_world, batch_quirk)
    per_term, details = _confidence_weighted(terms, errors, valid, alpha)
    loss_conf = (per_term * 2.0).mean()
    loss_scale = scale_loss(pred_factor, gt_factor, batch_quirk)
    details.update(loss_conf=loss_conf.detach(), loss_scale=loss_scale.detach(),
                   pred_factor=pred_factor.detach().mean(), gt_factor=gt_factor.mean())
    return loss_conf + loss_scale, details


def dust3r_pair_loss(
    predictions: SequencePredictions, gt_points: torch.Tensor, valid: torch.Tensor, camera_to_world: torch.Tensor,
    alpha: float = DUST3R_ALPHA,
) -> Tuple[torch.Tensor, Details]:
    """DUSt3R's ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha) on pairs (T = 2): the sum over the two
    views of mean(C ℓ - α log C). Details: loss_conf, loss_regr, conf_mean, regr_ref0, regr_tgt1,
    loss_conf_ref0, loss_conf_tgt1."""
    if predictions.num_frames != 2:
        raise ValueError(f"dust3r_pair_loss: expected a pair (T = 2), got T = {predictions.num_frames}")
    terms, errors, _, _ = _normalised_regression(predictions, gt_points, valid, camera_to_world, False)
    per_term, details = _confidence_weighted(terms, errors, valid, alpha)
    loss = per_term.sum()
    details["loss_conf"] = loss.detach()
    return loss, details


@torch.no_grad()
def scale_shift_invariant_error(
    predictions: SequencePredictions, gt_points: torch.Tensor, valid: torch.Tensor, camera_to_world: torch.Tensor,
) -> Tuple[torch.Tensor, Details]:
    """Spann3R's test criterion Regr3D_t_ScaleShiftInv(L21, gt_scale=True) (metres).

    The prediction is normalised per sample ('avg_dis'), both clouds lose their median z, the
    prediction takes the GT's median-norm scale (alignment.estimate_shift_scale); the value is the
    SUM over the 2 (T - 1) terms of the mean L21 over valid pixels, as the original's test loss.
    Details: regr_<term> per term.
    """
    _check_inputs(predictions, gt_points, valid, camera_to_world)
    gt = points_in_first_camera(gt_points, camera_to_world)
    pred_factor = average_distance_factor(predictions.per_frame()[0], valid)
    params = estimate_shift_scale(_per_sample(pred_factor, predictions.per_frame()[0]), gt, valid)
    ref = params.apply_to_prediction(_per_sample(pred_factor, predictions.ref_points))
    tgt = params.apply_to_prediction(_per_sample(pred_factor, predictions.tgt_points))
    terms = _terms(predictions, ref, tgt)
    errors = [_mean_or_zero(e) for e in _pixel_errors(terms, params.apply_to_ground_truth(gt), valid)]
    details = {f"regr_{name}": error for (name, *_), error in zip(terms, errors)}
    return torch.stack(errors).sum(), details
