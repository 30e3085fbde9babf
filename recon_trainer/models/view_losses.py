"""Training losses of a rendered view against its ground truth, sampled at the rays' NDC points.

Rendered tensors have the rays' layout (B, ..., C): (B, R, C) for sampled rays, (B, H, W, C)
for a full grid. Ground-truth maps (B, C, H, W) may have any resolution with the same aspect
ratio: they are read at the rays' NDC coordinates.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F

from recon_trainer.evaluation.nvs_metrics import mse, psnr_from_mse
from recon_trainer.models.base import require_finite

# Loss names a view produces (the model prefixes "loss_" and, for the coarse pass, "prev_stage_").
VIEW_LOSS_NAMES = (
    "rgb_mse",
    "rgb_psnr",
    "rgb_psnr_fg",
    "rgb_l1",
    "rgb_huber",
    "mask_bce",
    "mask_neg_iou",
    "depth_abs",
    "depth_abs_fg",
)
BCE_EPS = 1e-4  # opacities are clamped to [eps, 1 - eps] before the log
HUBER_SCALE = 0.03  # pseudo-Huber: quadratic for colour errors below about this, linear above
IOU_EPS = 1e-8  # added to the intersection and union of mask_neg_iou (two empty masks: IoU 1)


def sample_at_ndc(image: torch.Tensor, xys: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """image (B, C, H, W) read at NDC points xys (B, ..., 2) -> (B, ..., C).

    Uses pytorch3d's NDC (+x left, +y up, the shorter side spans [-1, 1]); a pixel-centre NDC
    point reads that pixel exactly.
    """
    b, c, h, w = image.shape
    short = min(h, w)
    scale = torch.tensor([-short / w, -short / h], dtype=xys.dtype, device=xys.device)
    grid = (xys.reshape(b, -1, 1, 2) * scale).to(image.dtype)
    sampled = F.grid_sample(image, grid, mode=mode, align_corners=False)  # (B, C, N, 1)
    return sampled[..., 0].permute(0, 2, 1).reshape(*xys.shape[:-1], c)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(B, ..., C) -> (1, N, C): one batch element, so the metrics reduce over every ray at once."""
    return x.reshape(1, -1, x.shape[-1])


def _masked_mean(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Scalar mean of x (B, ..., C) weighted by weights (B, ..., 1) over all rays and channels."""
    weights = weights.expand_as(x)
    return (x * weights).sum() / weights.sum().clamp(min=1e-8)


def _neg_iou(masks: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """1 - soft IoU of masks and fg (B, ..., 1) per image, averaged over the B images."""
    b = masks.shape[0]
    m, f = masks.reshape(b, -1), fg.reshape(b, -1)
    intersection = (m * f).sum(1)
    union = (m + f - m * f).sum(1)
    return (1.0 - (intersection + IOU_EPS) / (union + IOU_EPS)).mean()


def view_losses(
    *,
    features: torch.Tensor,
    depths: torch.Tensor,
    masks: torch.Tensor,
    xys: torch.Tensor,
    image_rgb: Optional[torch.Tensor] = None,
    fg_probability: Optional[torch.Tensor] = None,
    depth_map: Optional[torch.Tensor] = None,
    depth_mask: Optional[torch.Tensor] = None,
    mask_crop: Optional[torch.Tensor] = None,
) -> Dict[str, torch.Tensor]:
    """Scalar losses of one rendering pass, keyed by VIEW_LOSS_NAMES; those lacking ground truth are absent.

    features (B, ..., C >= 3; the first 3 are RGB), depths and masks (B, ..., 1) are the renders
    at the rays through xys (B, ..., 2). Ground truth: image_rgb (B, 3, H, W) (already masked
    by the model if it masks images), fg_probability, depth_map, depth_mask, mask_crop (B, 1, H, W).
    Every loss is restricted to mask_crop (valid pixels).
      rgb_mse, rgb_psnr: colour error over all rays; rgb_psnr_fg: weighted by the fg probability.
      rgb_l1: mean |colour error|; rgb_huber: mean pseudo-Huber s (sqrt(1 + (e / s)^2) - 1) of the
        colour error e per channel, s = HUBER_SCALE.
      mask_bce: binary cross-entropy of the opacity vs the fg probability.
      mask_neg_iou: 1 - soft IoU (Σ m f / Σ (m + f - m f)) of opacity m and fg f, averaged over images.
      depth_abs: mean |depth - gt| where the gt depth is valid; depth_abs_fg: on the foreground too.
    """
    crop = torch.ones_like(masks) if mask_crop is None else sample_at_ndc(mask_crop, xys, "nearest")
    losses: Dict[str, torch.Tensor] = {}
    fg = None if fg_probability is None else sample_at_ndc(fg_probability, xys)
    if image_rgb is not None:
        rgb_gt, rgb = sample_at_ndc(image_rgb, xys), features[..., :3]
        rgb_mse = mse(_flat(rgb), _flat(rgb_gt), _flat(crop))[0]
        losses["rgb_mse"] = rgb_mse
        losses["rgb_psnr"] = psnr_from_mse(rgb_mse)
        error = rgb - rgb_gt
        losses["rgb_l1"] = _masked_mean(error.abs(), crop)
        huber = HUBER_SCALE * ((1.0 + (error / HUBER_SCALE) ** 2).sqrt() - 1.0)
        losses["rgb_huber"] = _masked_mean(huber, crop)
        if fg is not None:
            losses["rgb_psnr_fg"] = psnr_from_mse(mse(_flat(rgb), _flat(rgb_gt), _flat(crop * fg))[0])
    if fg is not None:
        require_finite("the rendered opacity (mask_bce's input)", masks)
        require_finite("the sampled fg_probability (mask_bce's target)", fg)
        bce = F.binary_cross_entropy(masks.clamp(BCE_EPS, 1 - BCE_EPS), fg.clamp(0.0, 1.0), reduction="none")
        losses["mask_bce"] = _masked_mean(bce, crop)
        losses["mask_neg_iou"] = _neg_iou(masks * crop, fg.clamp(0.0, 1.0) * crop)
    if depth_map is not None:
        depth_gt = sample_at_ndc(depth_map, xys, "nearest")
        valid = crop * (depth_gt > 0).to(depths.dtype)
        if depth_mask is not None:
            valid = valid * sample_at_ndc(depth_mask, xys, "nearest")
        error = (depths - depth_gt).abs()
        losses["depth_abs"] = _masked_mean(error, valid)
        if fg is not None:
            losses["depth_abs_fg"] = _masked_mean(error, valid * fg)
    return losses
