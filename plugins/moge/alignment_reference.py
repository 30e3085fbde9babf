"""Brute-force references for `alignment` (tests only): readable, float64, slow.

They evaluate the full objective densely instead of using slopes and prefix sums. The
objective is piecewise linear in the scale and every term reaches its minimum (0) at its ratio
y_i / x_i, so a global minimum lies at one of the ratios (or anywhere when all x are 0): trying all
ratios is exhaustive. The scale + shift references try every anchor point of positive weight and
every ratio for each, the problem family MoGe's anchor search covers.
"""
from typing import Optional, Sequence, Tuple

import torch


def objective(
    scale: torch.Tensor, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, trunc: Optional[float]
) -> torch.Tensor:
    """Σ_i w_i |a x_i - y_i| (trunc None) or Σ_i min(trunc, w_i |a x_i - y_i|) for every scale a
    in `scale` (m,) with x, y, w (n,); returns (m,), constant terms of x_i = 0 included."""
    terms = w * (scale[:, None] * x - y).abs()
    if trunc is not None:
        terms = terms.clamp_max(trunc)
    return terms.sum(dim=-1)


def align_reference(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, trunc: Optional[float] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Optimal scale and objective value, each (B,), of rows x, y, w (B, n) by trying all ratios."""
    scales, values = [], []
    for xr, yr, wr in zip(x.double(), y.double(), w.double()):
        candidates = yr[xr != 0] / xr[xr != 0]
        if candidates.numel() == 0:
            candidates = torch.zeros(1, dtype=torch.float64)
        value = objective(candidates, xr, yr, wr, trunc)
        best = value.argmin()
        scales.append(candidates[best])
        values.append(value[best])
    return torch.stack(scales), torch.stack(values)


def grid_minimum(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, trunc: Optional[float], grid: torch.Tensor
) -> torch.Tensor:
    """The smallest objective (B,) over the scales of a dense `grid` (m,) for rows (B, n)."""
    return torch.stack([
        objective(grid.double(), xr, yr, wr, trunc).min() for xr, yr, wr in zip(x.double(), y.double(), w.double())
    ])


def shifted_objective(
    scale: torch.Tensor, shift: torch.Tensor, src: torch.Tensor, tgt: torch.Tensor, weight: torch.Tensor,
    trunc: Optional[float],
) -> torch.Tensor:
    """Σ_i Σ_c min(trunc, w_i |scale·src_ic + shift_c - tgt_ic|) for candidate pairs scale (m,),
    shift (m, k) of one sample src, tgt (n, k), weight (n,); no truncation when trunc is None.
    Returns (m,)."""
    terms = weight[:, None] * (scale[:, None, None] * src + shift[:, None, :] - tgt).abs()
    if trunc is not None:
        terms = terms.clamp_max(trunc)
    return terms.sum(dim=(-2, -1))


def scale_shift_reference(
    src: torch.Tensor, tgt: torch.Tensor, weight: torch.Tensor, shifted: Sequence[bool], trunc: Optional[float] = None
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best (scale (B,), shift (B, k), objective (B,)) over all anchors and ratios.

    src, tgt (B, n, k), weight (B, n); `shifted` (k flags) selects the coordinates that get a shift.
    For an anchor point j the shift is tgt_j - scale·src_j on those coordinates (0 elsewhere); the
    scale candidates are the ratios of the entries relative to the anchor. Samples without a
    positive weight give (0, 0, inf)."""
    keep = torch.tensor(shifted, dtype=torch.float64)
    scales, shifts, values = [], [], []
    for s, t, w in zip(src.double(), tgt.double(), weight.double()):
        best_scale, best_shift = torch.tensor(0.0, dtype=torch.float64), torch.zeros_like(keep)
        best_value = torch.tensor(float("inf"), dtype=torch.float64)
        for j in torch.nonzero(w > 0).flatten().tolist():
            rel_src, rel_tgt = (s - keep * s[j]).flatten(), (t - keep * t[j]).flatten()
            candidates = rel_tgt[rel_src != 0] / rel_src[rel_src != 0]
            if candidates.numel() == 0:
                continue
            shift = keep * (t[j] - candidates[:, None] * s[j])
            value = shifted_objective(candidates, shift, s, t, w, trunc)
            k = value.argmin()
            if value[k] < best_value:
                best_scale, best_shift, best_value = candidates[k], shift[k], value[k]
        scales.append(best_scale)
        shifts.append(best_shift)
        values.append(best_value)
    return torch.stack(scales), torch.stack(shifts), torch.stack(values)
