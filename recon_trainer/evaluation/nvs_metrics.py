"""Novel-view-synthesis metrics: tensors in, tensors out, one value per frame.

Images are (B, C, H, W) in [0, 1]; masks and depths (B, 1, H, W). A `mask` argument weights
pixels (1 = counted); it is broadcast over the channels, so a masked mean divides by
`mask.expand_as(x).sum()`. Every function returns a (B,) tensor.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn.functional as F

MSE_FLOOR = 1e-10  # PSNR of a perfect match is 100 dB instead of infinity
DEPTH_BORDER_CROP = 5  # pixels ignored along each image border by the depth error
DIVISION_EPS = 1e-8


def weighted_mean(x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B,) mean of x (B, ...) per batch element, weighting pixels by mask (B, 1 or C, ...)."""
    if mask is None:
        return x.flatten(1).mean(dim=1)
    mask = mask.expand_as(x)
    return (x * mask).flatten(1).sum(dim=1) / mask.flatten(1).sum(dim=1).clamp(min=DIVISION_EPS)


def mse(pred: torch.Tensor, gt: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B,) mean squared error over channels and the pixels selected by `mask`."""
    return weighted_mean((pred - gt) ** 2, mask)


def psnr_from_mse(mse_value: torch.Tensor) -> torch.Tensor:
    """PSNR in dB for images in [0, 1]: -10 log10(max(mse, 1e-10))."""
    return -10.0 * torch.log10(mse_value.clamp(min=MSE_FLOOR))


def psnr(pred: torch.Tensor, gt: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B,) peak signal-to-noise ratio in dB over the pixels selected by `mask`."""
    return psnr_from_mse(mse(pred, gt, mask))


def rgb_l1(pred: torch.Tensor, gt: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B,) mean absolute colour error over channels and the pixels selected by `mask`."""
    return weighted_mean((pred - gt).abs(), mask)


def iou(pred_mask: torch.Tensor, gt_mask: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B,) soft intersection over union of masks in [0, 1] within `mask`; 1 when both are empty."""
    if mask is None:
        mask = torch.ones_like(gt_mask)
    intersection = (pred_mask * gt_mask * mask).flatten(1).sum(dim=1)
    union = ((pred_mask + gt_mask - pred_mask * gt_mask) * mask).flatten(1).sum(dim=1)
    return torch.where(union > 0, intersection / union.clamp(min=DIVISION_EPS), torch.ones_like(union))


def crop_border(x: torch.Tensor, border: int) -> torch.Tensor:
    """x (..., H, W) without `border` pixels on each side."""
    if border <= 0:
        return x
    return x[..., border:-border, border:-border]


def depth_abs_best_scale(
    pred: torch.Tensor, gt: torch.Tensor, mask: Optional[torch.Tensor] = None, border: int = DEPTH_BORDER_CROP
) -> torch.Tensor:
    """(B,) mean |gt - s * pred| over mask ∩ (gt > 0), s the least-squares best scale per frame.

    s = Σ pred·gt / Σ pred² over the same pixels, so a prediction that is a scaled copy of the
    ground truth scores 0. `border` pixels along each side are ignored. NaN when no pixel is valid.
    """
    pred, gt = crop_border(pred, border), crop_border(gt, border)
    valid = (gt > 0).to(pred.dtype)
    if mask is not None:
        valid = valid * crop_border(mask, border)
    valid, pred, gt = valid.flatten(1), pred.flatten(1), gt.flatten(1)
    scale = (valid * pred * gt).sum(dim=1) / (valid * pred * pred).sum(dim=1).clamp(min=DIVISION_EPS)
    error = (valid * (gt - scale[:, None] * pred).abs()).sum(dim=1)
    n_valid = valid.sum(dim=1)
    return torch.where(n_valid > 0, error / n_valid.clamp(min=DIVISION_EPS), torch.full_like(n_valid, float("nan")))


def mask_background(image: torch.Tensor, fg_mask: torch.Tensor, bg_color: Sequence[float]) -> torch.Tensor:
    """image (B, 3, H, W) with the pixels where fg_mask (B, 1, H, W) is 0 replaced by bg_color."""
    bg = torch.as_tensor(bg_color, dtype=image.dtype, device=image.device).view(1, -1, 1, 1)
    return image * fg_mask + bg * (1.0 - fg_mask)


def resize_to(x: torch.Tensor, size_hw: Sequence[int], mode: str) -> torch.Tensor:
    """x (B, C, h, w) resized to size_hw; "bilinear" for images, "nearest" for masks and depths."""
    if tuple(x.shape[-2:]) == tuple(size_hw):
        return x
    if mode == "bilinear":
        return F.interpolate(x, size=tuple(size_hw), mode="bilinear", align_corners=False)
    return F.interpolate(x, size=tuple(size_hw), mode=mode)


def eval_frame(
    *,
    image_render: torch.Tensor,
    image_gt: torch.Tensor,
    mask_render: Optional[torch.Tensor] = None,
    depth_render: Optional[torch.Tensor] = None,
    fg_probability: Optional[torch.Tensor] = None,
    depth_gt: Optional[torch.Tensor] = None,
    depth_mask: Optional[torch.Tensor] = None,
    mask_crop: Optional[torch.Tensor] = None,
    bg_color: Sequence[float] = (0.0, 0.0, 0.0),
    mask_threshold: float = 0.5,
    lpips: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
) -> Dict[str, torch.Tensor]:
    """Per-frame NVS metrics of renders against ground truth, each a (B,) tensor.

    Renders (image (B, 3, h, w), mask and depth (B, 1, h, w)) are resized to the ground-truth
    resolution (B, ., H, W): bilinear for the image, nearest for mask and depth. The ground-truth
    foreground is `fg_probability >= mask_threshold`; the masked ground truth has `bg_color`
    outside it. Keys, all over `mask_crop` (valid pixels):
      psnr_full_image, rgb_l1_full_image: render vs the unmasked ground truth;
      psnr_masked, rgb_l1_masked: render vs the masked ground truth (needs fg_probability);
      psnr_fg, rgb_l1_fg: the same restricted to the foreground;
      iou: soft IoU of the rendered opacity vs the ground-truth foreground;
      depth_abs_fg: best-scale depth error over the foreground (depth_gt * depth_mask > 0);
      lpips_full_image, lpips_masked: when an `lpips(a, b) -> (B, 1, 1, 1)` on [-1, 1] images is given.
    Metrics whose inputs are missing are left out.
    """
    size_hw = image_gt.shape[-2:]
    image_render = resize_to(image_render, size_hw, "bilinear")
    if mask_crop is None:
        mask_crop = torch.ones_like(image_gt[:, :1])
    results = {
        "psnr_full_image": psnr(image_render, image_gt, mask_crop),
        "rgb_l1_full_image": rgb_l1(image_render, image_gt, mask_crop),
    }
    if lpips is not None:
        results["lpips_full_image"] = lpips(image_render * 2 - 1, image_gt * 2 - 1).flatten()
    if fg_probability is None:
        return results
    fg = (fg_probability >= mask_threshold).to(image_gt.dtype)
    image_gt_masked = mask_background(image_gt, fg, bg_color)
    results["psnr_masked"] = psnr(image_render, image_gt_masked, mask_crop)
    results["rgb_l1_masked"] = rgb_l1(image_render, image_gt_masked, mask_crop)
    results["psnr_fg"] = psnr(image_render, image_gt_masked, mask_crop * fg)
    results["rgb_l1_fg"] = rgb_l1(image_render, image_gt_masked, mask_crop * fg)
    if lpips is not None:
        results["lpips_masked"] = lpips(image_render * 2 - 1, image_gt_masked * 2 - 1).flatten()
    if mask_render is not None:
        results["iou"] = iou(resize_to(mask_render, size_hw, "nearest"), fg, mask_crop)
    if depth_render is not None and depth_gt is not None:
        depth_gt = depth_gt * depth_mask if depth_mask is not None else depth_gt
        results["depth_abs_fg"] = depth_abs_best_scale(
            resize_to(depth_render, size_hw, "nearest"), depth_gt, fg * mask_crop
        )
    return results
