"""MiDaS training losses in disparity space (Ranftl et al., TPAMI 2022, §C.2 of the method notes).

All terms use batch-based reduction: sums over the whole batch divided by the total number of valid
pixels (of the batch, at the term's resolution), so images with more valid pixels weigh more.

- `ssi_lsq_loss`: the prediction is least-squares aligned to the target per image; 1/(2M) Σ r².
- `ssi_trimmed_loss`: prediction and target are normalised per image by median and mean absolute
  deviation; 1/(2M) Σ over the smallest (1 - trim) share of |r| per image.
- `gradient_matching_loss`: the multi-scale gradient term on the residual of either variant.
- `midas_loss`: the three together, as the model calls them.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch

from recon_trainer.evaluation.depth_metrics import align_scale_shift

NORMALISATION_EPS = 1e-8  # smallest per-image mean absolute deviation divided by (trimmed variant)


def _batch_mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """total / count, or 0 (keeping the graph) when nothing is valid."""
    return total / count.clamp(min=1)


def ssi_lsq_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scale-and-shift-invariant MSE: (Σ_batch Σ_mask r² / (2 M), r).

    pred, target: (B, H, W) disparities; mask: (B, H, W) bool. r = scale * pred + shift - target with
    the per-image least-squares (scale, shift) of `align_scale_shift` (differentiable), 0 off the mask;
    M = the number of valid pixels in the batch.
    """
    scale, shift = align_scale_shift(pred, target, mask)
    aligned = scale[:, None, None] * pred + shift[:, None, None]
    residual = torch.where(mask, aligned - target, torch.zeros_like(pred))
    return _batch_mean((residual * residual).sum(), 2 * mask.sum()), residual


def _masked_lower_median(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image the lower median of the mask pixels, element (n - 1) // 2 of the n sorted values
    (torch.median's convention); values (B, N), mask (B, N) bool; 0 for an empty mask. Returns (B,)."""
    ordered = values.masked_fill(~mask, float("inf")).sort(dim=1).values
    index = ((mask.sum(1) - 1) // 2).clamp(min=0)
    median = ordered.gather(1, index[:, None])[:, 0]
    return torch.where(mask.any(1), median, torch.zeros_like(median))


def _normalise(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(values - median) / mean |values - median| per image over the mask; values, mask (B, N)."""
    median = _masked_lower_median(values, mask)
    centred = values - median[:, None]
    deviation = torch.where(mask, centred.abs(), torch.zeros_like(centred)).sum(1) / mask.sum(1).clamp(min=1)
    return centred / deviation.clamp(min=NORMALISATION_EPS)[:, None]


def _trimmed_count(count: torch.Tensor, trim: float) -> torch.Tensor:
    """The number of residuals kept of `count` valid pixels: floor((1 - trim) * count)."""
    return torch.floor((1.0 - trim) * count.double() + 1e-9).long()


def ssi_trimmed_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, trim: float = 0.2
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scale-and-shift-invariant trimmed MAE: (Σ_batch Σ_kept |r| / (2 M), r).

    pred, target: (B, H, W); mask: (B, H, W) bool. Each image's prediction and target are normalised
    separately over its mask: minus the (lower) median, divided by the mean absolute deviation from it.
    r = normalised pred - normalised target (0 off the mask); per image only the floor((1 - trim) n)
    smallest |r| of its n valid pixels are summed; M = the number of valid pixels in the batch
    (untrimmed, as in the paper's 1/(2M)). The returned residual is the full, untrimmed r.
    """
    if not 0.0 <= trim < 1.0:
        raise ValueError(f"ssi_trimmed_loss: trim={trim} must be in [0, 1)")
    batch = pred.shape[0]
    flat_mask = mask.reshape(batch, -1)
    residual = _normalise(pred.reshape(batch, -1), flat_mask) - _normalise(target.reshape(batch, -1), flat_mask)
    residual = torch.where(flat_mask, residual, torch.zeros_like(residual))
    ordered = residual.abs().masked_fill(~flat_mask, float("inf")).sort(dim=1).values
    kept = torch.arange(ordered.shape[1], device=pred.device)[None] < _trimmed_count(flat_mask.sum(1), trim)[:, None]
    total = torch.where(kept, ordered, torch.zeros_like(ordered)).sum()
    return _batch_mean(total, 2 * mask.sum()), residual.reshape(pred.shape)


def gradient_matching_loss(residual: torch.Tensor, mask: torch.Tensor, scales: int = 4) -> torch.Tensor:
    """Multi-scale gradient matching: Σ_k (Σ_batch G_k / M_k) for k = 0 .. scales - 1.

    residual, mask: (B, H, W), the residual of an ssi loss and its bool mask. Scale k keeps every
    2^k-th row and column; G_k sums |R(y, x+1) - R(y, x)| over horizontal neighbours that are both
    valid and |R(y+1, x) - R(y, x)| over vertical ones; M_k is the number of valid pixels of the batch
    at that scale (a scale without any adds 0). This is the normalisation of the reference PyTorch code
    (per-scale M_k), not a single full-resolution M for all scales.
    """
    total = residual.new_zeros(())
    for k in range(scales):
        step = 2**k
        r = residual[:, ::step, ::step]
        m = mask[:, ::step, ::step]
        valid_x = m[:, :, 1:] & m[:, :, :-1]
        valid_y = m[:, 1:, :] & m[:, :-1, :]
        grad_x = torch.where(valid_x, (r[:, :, 1:] - r[:, :, :-1]).abs(), torch.zeros_like(r[:, :, 1:]))
        grad_y = torch.where(valid_y, (r[:, 1:, :] - r[:, :-1, :]).abs(), torch.zeros_like(r[:, 1:, :]))
        total = total + _batch_mean(grad_x.sum() + grad_y.sum(), m.sum())
    return total


def midas_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    variant: str = "trimmed",
    trim: float = 0.2,
    alpha: float = 0.5,
    scales: int = 4,
) -> Dict[str, torch.Tensor]:
    """The MiDaS objective L_ssi + alpha * L_grad on a batch.

    pred, target: (B, H, W) or (B, 1, H, W) disparities; mask: the same shape, bool or float (> 0.5
    is valid). variant "trimmed" (ssitrim, the paper's default) or "lsq" (ssimse). Returns scalars
    {"loss_ssi": L_ssi, "loss_grad": L_grad (unweighted; 0 when alpha or scales is 0),
    "objective": L_ssi + alpha * L_grad}.
    """
    if pred.dim() == 4:
        pred, target, mask = pred[:, 0], target[:, 0], mask[:, 0]
    mask = mask if mask.dtype == torch.bool else mask > 0.5
    if variant == "trimmed":
        loss_ssi, residual = ssi_trimmed_loss(pred, target, mask, trim)
    elif variant == "lsq":
        loss_ssi, residual = ssi_lsq_loss(pred, target, mask)
    else:
        raise ValueError(f"midas_loss: variant={variant!r}, expected 'trimmed' or 'lsq'")
    loss_grad = gradient_matching_loss(residual, mask, scales) if alpha != 0 else pred.new_zeros(())
    return {"loss_ssi": loss_ssi, "loss_grad": loss_grad, "objective": loss_ssi + alpha * loss_grad}
