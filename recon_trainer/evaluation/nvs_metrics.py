"""Novel-view-synthesis metrics: tensors in, tensors out, one value per frame.

Images are (B, C, H, W) with colours in [0, 1]; masks and depths (B, 1, H, W). A `mask` argument
weights pixels (1 = counted). Every metric function returns a (B,) tensor.

`eval_frame` scores renders against ground truth under one of two conventions (CONVENTIONS):

"implicitron" (the default) gives the numbers of Implicitron's `eval_batch`, and so of CO3D's
published tables, on identical inputs (tests/evaluation/test_nvs_metrics_implicitron_parity.py
checks this against values computed by Implicitron's own code):
  - the rendered image is clamped to [0, 1] before PSNR and L1 (a render of 1.2 against 1.0 scores
    the PSNR cap of 100 dB);
  - rgb_l1 is the per-pixel absolute error summed over the colour channels, averaged over the mask
    (so 3x a per-channel mean); an empty mask gives 0;
  - PSNR is -10 log10(max(mse, 1e-10)), mse dividing by max(mask sum over channels, 1e-5);
  - without fg_probability the whole image is foreground, so the _masked and _fg metrics are still
    reported (and equal the full-image ones when mask_crop is all ones);
  - the _masked metrics weight pixels by mask_crop * mask_crop (the same for a binary mask_crop);
  - IoU multiplies both masks by mask_crop and adds 1e-4 to the union (two empty masks: 0);
  - depth_abs_fg: the ground truth is depth_map * depth_mask, kept where the foreground crop mask
    is > 0.5 and the depth is > 0, 5 border pixels ignored; the prediction is scaled by
    mean(pred * gt) / max(mean(pred^2), 1e-4) (means over all pixels of the cropped image, invalid
    ones counting 0) and the mean |gt - s * pred| divides by max(valid pixels, 1e-4): a frame
    without valid depth scores 0.
"channel_mean" differs in three places: rgb_l1 is also averaged over the colour channels (1/3 of
  the above); the depth scale is the exact least-squares ratio sum(pred * gt) / sum(pred^2) over the
  valid pixels (no floor that depends on the depth unit and the foreground's share of the image);
  and a frame without valid depth scores NaN, which the evaluator's averages skip.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn.functional as F

CONVENTIONS = ("implicitron", "channel_mean")  # see the module docstring
MSE_FLOOR = 1e-10  # PSNR of a perfect match is 100 dB instead of infinity
MSE_MASK_EPS = 1e-5  # floor of the (channel-expanded) mask sum that PSNR's mse divides by
L1_MASK_FLOOR = 1.0  # floor of the one-channel mask sum that rgb_l1 divides by (implicitron)
IOU_UNION_EPS = 1e-4  # added to the IoU's union
DEPTH_BORDER_CROP = 5  # pixels ignored along each image border by the depth error
DEPTH_SCALE_FLOOR = 1e-4  # floor of mean(pred^2) in the best depth scale (implicitron)
DEPTH_MASS_FLOOR = 1e-4  # floor of the valid-pixel count the depth error divides by (implicitron)
DIVISION_EPS = 1e-8


def weighted_mean(x: torch.Tensor, mask: Optional[torch.Tensor] = None, eps: float = DIVISION_EPS) -> torch.Tensor:
    """(B,) mean of x (B, ...) per batch element, weighting pixels by mask (B, 1 or C, ...).

    The mask is broadcast over the channels, so the mean divides by max(mask.expand_as(x).sum(), eps).
    """
    if mask is None:
        return x.flatten(1).mean(dim=1)
    mask = mask.expand_as(x)
    return (x * mask).flatten(1).sum(dim=1) / mask.flatten(1).sum(dim=1).clamp(min=eps)


def mse(
    pred: torch.Tensor, gt: torch.Tensor, mask: Optional[torch.Tensor] = None, eps: float = DIVISION_EPS
) -> torch.Tensor:
    """(B,) mean squared error over channels and the pixels selected by `mask` (weighted_mean)."""
    return weighted_mean((pred - gt) ** 2, mask, eps)


def psnr_from_mse(mse_value: torch.Tensor) -> torch.Tensor:
    """PSNR in dB for images in [0, 1]: -10 log10(max(mse, 1e-10))."""
    return -10.0 * torch.log10(mse_value.clamp(min=MSE_FLOOR))


def psnr(pred: torch.Tensor, gt: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B,) peak signal-to-noise ratio in dB over the pixels selected by `mask`.

    The mse divides by max(mask sum over all channels, 1e-5), as Implicitron's calc_psnr; an
    empty mask gives mse 0, i.e. 100 dB. The images are used as given (eval_frame clamps the render).
    """
    return psnr_from_mse(mse(pred, gt, mask, eps=MSE_MASK_EPS))


def rgb_l1(pred: torch.Tensor, gt: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B,) absolute colour error summed over the channels, averaged over the pixels of `mask`.

    Implicitron's rgb_l1: sum(|pred - gt| * mask) / max(sum(mask), 1) with the mask (B, 1, H, W)
    counted once per pixel, so it is 3x `rgb_l1_channel_mean` for RGB; an empty mask gives 0.
    """
    if mask is None:
        mask = torch.ones_like(pred[:, :1])
    error = ((pred - gt).abs() * mask).flatten(1).sum(dim=1)
    return error / mask.flatten(1).sum(dim=1).clamp(min=L1_MASK_FLOOR)


def rgb_l1_channel_mean(pred: torch.Tensor, gt: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B,) mean absolute colour error over the channels and the pixels of `mask` (0 for an empty mask)."""
    return weighted_mean((pred - gt).abs(), mask)


def iou(pred_mask: torch.Tensor, gt_mask: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B,) soft intersection over union of masks (B, 1, H, W) in [0, 1], both multiplied by `mask`.

    sum(p * g) / (sum(p + g - p * g) + 1e-4), Implicitron's iou: two empty masks score 0.
    """
    if mask is not None:
        pred_mask = pred_mask * mask
        gt_mask = gt_mask * mask
    intersection = (pred_mask * gt_mask).flatten(1).sum(dim=1)
    union = (pred_mask + gt_mask - pred_mask * gt_mask).flatten(1).sum(dim=1) + IOU_UNION_EPS
    return intersection / union


def crop_border(x: torch.Tensor, border: int) -> torch.Tensor:
    """x (..., H, W) without `border` pixels on each side."""
    if border <= 0:
        return x
    return x[..., border:-border, border:-border]


def depth_abs_best_scale(
    pred: torch.Tensor,
    gt: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    border: int = DEPTH_BORDER_CROP,
    mask_threshold: float = 0.5,
    exact_scale: bool = False,
) -> torch.Tensor:
    """(B,) mean |gt - s * pred| over the valid pixels, s the best scale of the prediction per frame.

    pred, gt, mask: (B, 1, H, W) depths in scene units (gt 0 where unknown) and a weight map.
    `border` pixels along each side are ignored; the valid pixels are those where `mask` >
    `mask_threshold` (all without a mask) and gt > 0.
    Default (Implicitron's eval_depth): s = mean(pred * gt) / max(mean(pred^2), 1e-4), the means
    taken over every pixel of the cropped image with invalid ones counting 0, and the error divides
    by max(valid pixels, 1e-4), so a frame without valid depth scores 0.
    exact_scale: s = sum(pred * gt) / sum(pred^2) over the valid pixels (a scaled copy of the ground
    truth scores 0 whatever the depth unit) and a frame without valid depth scores NaN.
    """
    pred, gt = crop_border(pred, border), crop_border(gt, border)
    if mask is not None:
        gt = gt * (crop_border(mask, border) > mask_threshold).to(gt.dtype)
    valid = (gt > 0).to(gt.dtype)
    n_valid = valid.flatten(1).sum(dim=1)
    dims = tuple(range(1, pred.dim()))
    if exact_scale:
        scale = (pred * gt * valid).sum(dim=dims) / (pred * pred * valid).sum(dim=dims).clamp(min=1e-30)
    else:
        scale = (pred * gt * valid).mean(dim=dims) / (pred * pred * valid).mean(dim=dims).clamp(min=DEPTH_SCALE_FLOOR)
    pred = pred * scale.view(-1, *([1] * (pred.dim() - 1)))
    error = (valid * (gt - pred).abs()).flatten(1).sum(dim=1)
    if exact_scale:
        return torch.where(n_valid > 0, error / n_valid.clamp(min=1.0), torch.full_like(n_valid, float("nan")))
    return error / n_valid.clamp(min=DEPTH_MASS_FLOOR)


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


def check_convention(convention: str, key: str = "convention") -> None:
    """Raise ValueError naming `key` unless `convention` is one of CONVENTIONS."""
    if convention not in CONVENTIONS:
        raise ValueError(f"{key}={convention!r}: expected one of {', '.join(map(repr, CONVENTIONS))}")


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
    convention: str = "implicitron",
) -> Dict[str, torch.Tensor]:
    """Per-frame NVS metrics of renders against ground truth, each a (B,) tensor (module docstring).

    Renders (image (B, 3, h, w), mask and depth (B, 1, h, w)) are resized to the ground-truth
    resolution (B, ., H, W): bilinear for the image, nearest for mask and depth; the image is then
    clamped to [0, 1]. The ground-truth foreground is `fg_probability >= mask_threshold` (the whole
    image without fg_probability); the masked ground truth has `bg_color` outside it. mask_crop
    (ones when None) marks the valid pixels. Keys, in Implicitron's order:
      iou: soft IoU of the rendered opacity vs the foreground (needs mask_render);
      psnr_masked, rgb_l1_masked: render vs the masked ground truth over mask_crop;
      psnr_fg, rgb_l1_fg: the same over mask_crop * foreground;
      depth_abs_fg: best-scale depth error over mask_crop * foreground, the ground truth being
        depth_gt * depth_mask (needs depth_render and depth_gt);
      psnr_full_image, rgb_l1_full_image: render vs the unmasked ground truth over mask_crop;
      lpips_full_image, lpips_masked: `lpips(gt, render)` on images clamped to [0, 1] and mapped
        to [-1, 1], an (B, 1, 1, 1) or (B,) distance (when `lpips` is given).
    `convention`: "implicitron" or "channel_mean" (CONVENTIONS; module docstring).
    """
    check_convention(convention)
    implicitron = convention == "implicitron"
    l1 = rgb_l1 if implicitron else rgb_l1_channel_mean
    size_hw = image_gt.shape[-2:]
    image_render = resize_to(image_render, size_hw, "bilinear").clamp(0.0, 1.0)
    if fg_probability is None:
        fg = torch.ones_like(image_gt[:, :1])
    else:
        fg = (fg_probability >= mask_threshold).to(image_gt.dtype)
    if mask_crop is None:
        mask_crop = torch.ones_like(fg)
    image_gt_masked = mask_background(image_gt, fg, bg_color)

    results: Dict[str, torch.Tensor] = {}
    if mask_render is not None:
        results["iou"] = iou(resize_to(mask_render, size_hw, "nearest"), fg, mask_crop)
    for name, loss_mask in (("masked", mask_crop * mask_crop), ("fg", mask_crop * fg)):
        results[f"psnr_{name}"] = psnr(image_render, image_gt_masked, loss_mask)
        results[f"rgb_l1_{name}"] = l1(image_render, image_gt_masked, loss_mask)
    if depth_render is not None and depth_gt is not None:
        if depth_mask is not None:
            depth_gt = depth_gt * depth_mask
        results["depth_abs_fg"] = depth_abs_best_scale(
            resize_to(depth_render, size_hw, "nearest"), depth_gt, mask_crop * fg, exact_scale=not implicitron
        )
    results["psnr_full_image"] = psnr(image_render, image_gt, mask_crop)
    results["rgb_l1_full_image"] = l1(image_render, image_gt, mask_crop)
    if lpips is not None:
        for name, gt in (("full_image", image_gt), ("masked", image_gt_masked)):
            distance = lpips(2.0 * gt.clamp(0.0, 1.0) - 1.0, 2.0 * image_render - 1.0)
            results[f"lpips_{name}"] = distance.reshape(len(image_gt), -1)[:, 0]
    return results
