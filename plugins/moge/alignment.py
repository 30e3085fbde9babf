"""Robust scale / shift alignment for MoGe's losses and metrics (method notes §A.3).

The core is `align`: for rows of values x, y and non-negative weights w (shape (..., n)) it
finds the scale a minimising

    Σ_i w_i |a x_i - y_i|                  (trunc None: a weighted median of the ratios y_i / x_i)
    Σ_i min(trunc, w_i |a x_i - y_i|)      (truncated: the "ROE" objective)

exactly, without iterations. Every term is piecewise linear in a; its slope only increases at
the ratio A_i = y_i / x_i (it rises from -w_i|x_i| to +w_i|x_i|) and decreases where the term
saturates, at A_i ∓ trunc / (w_i |x_i|). So the local minima are ratios where the left slope is
negative and the right slope non-negative; the slopes at all ratios come from prefix sums of
w|x| over the three sorted breakpoint lists, and the objective is then evaluated at those
candidates only. Entries with x_i = 0 are constant terms and are left out of the returned value
(as MoGe does).

Scale + shift problems use the anchor trick: for each entry j of positive weight the shift is
fixed so that j is matched exactly, the remaining 1-D problem in the scale is solved with
`align`, and the anchor with the smallest objective wins. The search runs without gradients;
the winning scale and shift are then rebuilt from the two defining entries of the inputs, so
gradients reach the source (prediction) through them. Among exactly equal objective values the
last candidate (highest index) wins, as the original does on the CPU.
"""
import math
from typing import Optional, Tuple, Union

import torch

Trunc = Optional[Union[float, torch.Tensor]]

RESIDUAL_CHUNK_ELEMENTS = 4096 ** 2  # entries per batch when evaluating candidate objectives
ANCHOR_CHUNK_ELEMENTS = 2 ** 21  # entries per batch of anchored 1-D problems


def _last_argmin(values: torch.Tensor) -> torch.Tensor:
    """Index of the last minimum along the last dim (ties resolved towards the highest index)."""
    return values.shape[-1] - 1 - values.flip(-1).argmin(dim=-1)


def _make_x_nonnegative(x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Multiply each pair by sign(x): |a x - y| is unchanged and x becomes >= 0 (x = 0 -> y = 0)."""
    sign = torch.sign(x)
    return x * sign, y * sign


def _weighted_median_scale(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, eps: float
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Untruncated case of `align`; all inputs (..., n) broadcast."""
    x, y, w = torch.broadcast_tensors(x, y, w)
    x, y = _make_x_nonnegative(x, y)
    ratios, order = (y / x.clamp_min(eps)).sort(dim=-1)
    slope_weight = (w * x).gather(-1, order)
    # Slope of the objective just right of each sorted ratio: (mass at or left of it) - (mass right of it).
    slopes = 2 * slope_weight.cumsum(dim=-1) - slope_weight.sum(dim=-1, keepdim=True)
    first_nonnegative = torch.searchsorted(slopes, torch.zeros_like(slopes[..., :1]), side="left")
    first_nonnegative = first_nonnegative.clamp_max(slopes.shape[-1] - 1)
    scale = ratios.gather(-1, first_nonnegative).squeeze(-1)
    index = order.gather(-1, first_nonnegative).squeeze(-1)
    with torch.no_grad():
        loss = (w * (scale[..., None] * x - y).abs()).sum(dim=-1)
    return scale, loss, index


def _prefix_masses(
    breakpoints: torch.Tensor, mass: torch.Tensor, query: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per row, Σ mass_i over breakpoints_i < q and over breakpoints_i <= q for each query q.
    All (R, n); returns the two (R, n) sums."""
    ordered, order = breakpoints.sort(dim=-1)
    cumulative = torch.cat([torch.zeros_like(mass[:, :1]), mass.gather(-1, order).cumsum(dim=-1)], dim=-1)
    below = cumulative.gather(-1, torch.searchsorted(ordered, query, side="left"))
    at_or_below = cumulative.gather(-1, torch.searchsorted(ordered, query, side="right"))
    return below, at_or_below


def _truncated_objective(
    scale: torch.Tensor, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, trunc: Union[float, torch.Tensor]
) -> torch.Tensor:
    """Σ_i min(trunc, w_i |scale x_i - y_i|) over the last dim; scale (R,), the rest (R, n)."""
    residual = (scale[:, None] * x - y).abs() * w
    residual = residual.clamp_max(trunc) if not torch.is_tensor(trunc) else torch.minimum(residual, trunc)
    return residual.sum(dim=-1)


def _truncated_scale(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, trunc: Union[float, torch.Tensor], eps: float
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Truncated case of `align`; all inputs (..., n) broadcast, trunc a float or broadcastable."""
    x, y, w = torch.broadcast_tensors(x, y, w)
    batch_shape, n = x.shape[:-1], x.shape[-1]
    x, y, w = (t.reshape(-1, n) for t in (x, y, w))
    if torch.is_tensor(trunc):
        trunc = trunc.to(x.dtype).broadcast_to((*batch_shape, n)).reshape(-1, n)
    x, y = _make_x_nonnegative(x, y)
    rows = x.shape[0]
    with torch.no_grad():
        mass = w * x  # slope change of each term at its breakpoints
        weighted_y, safe_mass = w * y, mass.clamp_min(eps)
        ratios = y / x.clamp_min(eps)
        starts = (weighted_y - trunc) / safe_mass  # term i saturates below this scale ...
        ends = (weighted_y + trunc) / safe_mass  # ... and above this one
        # Slope of the objective left / right of each ratio: +2 mass per ratio passed, -1 per
        # saturation start or end passed.
        ratio_left, ratio_right = _prefix_masses(ratios, mass, ratios)
        start_left, start_right = _prefix_masses(starts, mass, ratios)
        end_left, end_right = _prefix_masses(ends, mass, ratios)
        left_slope = 2 * ratio_left - start_left - end_left
        right_slope = 2 * ratio_right - start_right - end_right
        is_minimum = (left_slope < 0) & (right_slope >= 0)
        is_minimum[:, 0] |= ~is_minimum.any(dim=-1)  # flat rows: take the first entry
        cand_row, cand_col = torch.nonzero(is_minimum, as_tuple=True)

        values = torch.full((rows, n), math.inf, dtype=x.dtype, device=x.device)
        chunk = max(1, RESIDUAL_CHUNK_ELEMENTS // max(n, 1))
        for start in range(0, cand_row.shape[0], chunk):
            r, c = cand_row[start:start + chunk], cand_col[start:start + chunk]
            row_trunc = trunc[r] if torch.is_tensor(trunc) else trunc
            values[r, c] = _truncated_objective(ratios[r, c], x[r], y[r], w[r], row_trunc)
        index = _last_argmin(values)
        loss = values.gather(-1, index[:, None]).squeeze(-1)

    scale = y.gather(-1, index[:, None]) / x.gather(-1, index[:, None]).clamp_min(eps)
    return scale.reshape(batch_shape), loss.reshape(batch_shape), index.reshape(batch_shape)


def align(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, trunc: Trunc = None, eps: float = 1e-7
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Globally optimal scale a of `min Σ w|a x - y|` (trunc None) or `min Σ min(trunc, w|a x - y|)`.

    x, y, w: (..., n), broadcast together; w >= 0. trunc: None, a float, or a tensor broadcastable
    to (..., n). Returns (a (...), differentiable w.r.t. x and y; objective at a (...), detached,
    without the constant terms of entries with x = 0; index (...) int64 of the entry with
    a = y[index] / x[index])."""
    if trunc is None:
        return _weighted_median_scale(x, y, w, eps)
    return _truncated_scale(x, y, w, trunc, eps)


def _flat_trunc(trunc: Trunc, entry_shape: torch.Size, batch_size: int) -> Trunc:
    """A tensor trunc broadcast to the entries (..., n[, k]) and flattened to (batch_size, n*k)."""
    if not torch.is_tensor(trunc):
        return trunc
    return trunc.broadcast_to(entry_shape).reshape(batch_size, -1)


def _search_anchors(
    src: torch.Tensor, tgt: torch.Tensor, weight: torch.Tensor, shifted: Tuple[bool, ...], trunc: Trunc
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The best anchor of each row for a shared scale plus a shift of the coordinates in `shifted`.

    src, tgt: (B, n, k) entries; weight (B, n) >= 0; shifted: k flags; trunc as `align` (a tensor
    already flattened to (B, n*k)). Anchors are the points of positive weight; for each the shifted
    coordinates of the anchor are subtracted from all points and the 1-D problem is solved over the
    n*k entries. Returns (anchor (B,) point index, partner (B,) entry index in [0, n*k) defining
    the scale, has_anchor (B,) bool); runs without gradients."""
    batch_size, n, k = src.shape
    keep = torch.tensor(shifted, dtype=torch.bool, device=src.device)
    with torch.no_grad():
        anchor_row, anchor_col = torch.nonzero(weight > 0, as_tuple=True)
        losses, partners = [], []
        chunk = max(1, ANCHOR_CHUNK_ELEMENTS // (n * k))
        for start in range(0, anchor_row.shape[0], chunk):
            r, c = anchor_row[start:start + chunk], anchor_col[start:start + chunk]
            src_offset = torch.where(keep, src[r, c], torch.zeros_like(src[r, c]))
            tgt_offset = torch.where(keep, tgt[r, c], torch.zeros_like(tgt[r, c]))
            anchored_src = (src[r] - src_offset[:, None, :]).flatten(-2)
            anchored_tgt = (tgt[r] - tgt_offset[:, None, :]).flatten(-2)
            anchored_weight = weight[r][:, :, None].expand(-1, -1, k).flatten(-2)
            row_trunc = trunc[r] if torch.is_tensor(trunc) else trunc
            _, loss, partner = align(anchored_src, anchored_tgt, anchored_weight, row_trunc)
            losses.append(loss)
            partners.append(partner)
        table = torch.full((batch_size, n), math.inf, dtype=src.dtype, device=src.device)
        partner_table = torch.zeros((batch_size, n), dtype=torch.long, device=src.device)
        if losses:
            table[anchor_row, anchor_col] = torch.cat(losses)
            partner_table[anchor_row, anchor_col] = torch.cat(partners)
        anchor = _last_argmin(table)
        partner = partner_table.gather(-1, anchor[:, None]).squeeze(-1)
        has_anchor = (weight > 0).any(dim=-1)
    return anchor, partner, has_anchor


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (B, m), index (B,) -> values[b, index[b]] (B,), differentiable w.r.t. values."""
    return values.gather(-1, index[:, None]).squeeze(-1)


def align_depth_scale(
    depth_src: torch.Tensor, depth_tgt: torch.Tensor, weight: torch.Tensor, trunc: Trunc = None
) -> torch.Tensor:
    """Scale (...) of `align` for depths (..., N) with weights (..., N)."""
    return align(depth_src, depth_tgt, weight, trunc)[0]


def align_depth_affine(
    depth_src: torch.Tensor, depth_tgt: torch.Tensor, weight: torch.Tensor, trunc: Trunc = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scale and shift (both (...)) minimising the (truncated) weighted L1 of s·src + t - tgt over
    depths (..., N), weights (..., N), via the anchor trick. Rows without a positive weight give
    scale 0 and shift 0."""
    batch_shape, n = depth_src.shape[:-1], depth_src.shape[-1]
    batch_size = math.prod(batch_shape)
    src, tgt, w = (t.reshape(batch_size, n) for t in (depth_src, depth_tgt, weight))
    flat_trunc = _flat_trunc(trunc, depth_src.shape, batch_size)
    anchor, partner, has_anchor = _search_anchors(src[..., None], tgt[..., None], w, (True,), flat_trunc)
    src_1, tgt_1, src_2, tgt_2 = _take(src, anchor), _take(tgt, anchor), _take(src, partner), _take(tgt, partner)
    scale = (tgt_2 - tgt_1) / torch.where(src_2 != src_1, src_2 - src_1, 1e-7)
    shift = tgt_1 - scale * src_1
    scale, shift = torch.where(has_anchor, scale, 0), torch.where(has_anchor, shift, 0)
    return scale.reshape(batch_shape), shift.reshape(batch_shape)


def align_points_scale(
    points_src: torch.Tensor, points_tgt: torch.Tensor, weight: torch.Tensor, trunc: Trunc = None
) -> torch.Tensor:
    """Shared xyz scale (...) for points (..., N, 3) with per-point weights (..., N); only positive
    scales are meaningful, callers filter the others."""
    entry_weight = weight[..., None].expand_as(points_src)
    return align(points_src.flatten(-2), points_tgt.flatten(-2), entry_weight.flatten(-2), trunc)[0]


def _align_points_scale_shift(
    points_src: torch.Tensor, points_tgt: torch.Tensor, weight: torch.Tensor, trunc: Trunc, shift_z_only: bool
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Common body of the scale + z-shift and scale + xyz-shift alignments."""
    batch_shape, n = points_src.shape[:-2], points_src.shape[-2]
    batch_size = math.prod(batch_shape)
    src, tgt = points_src.reshape(batch_size, n, 3), points_tgt.reshape(batch_size, n, 3)
    w = weight.reshape(batch_size, n)
    shifted = (False, False, True) if shift_z_only else (True, True, True)
    flat_trunc = _flat_trunc(trunc, points_src.shape, batch_size)
    anchor, partner, has_anchor = _search_anchors(src, tgt, w, shifted, flat_trunc)

    keep = torch.tensor(shifted, dtype=src.dtype, device=src.device)
    anchor_src = torch.gather(src, 1, anchor[:, None, None].expand(-1, 1, 3)).squeeze(1) * keep  # (B, 3)
    anchor_tgt = torch.gather(tgt, 1, anchor[:, None, None].expand(-1, 1, 3)).squeeze(1) * keep
    coordinate = partner % 3
    src_1, tgt_1 = _take(anchor_src, coordinate), _take(anchor_tgt, coordinate)
    src_2, tgt_2 = _take(src.flatten(-2), partner), _take(tgt.flatten(-2), partner)
    scale = (tgt_2 - tgt_1) / torch.where(src_2 != src_1, src_2 - src_1, 1.0)
    shift = anchor_tgt - scale[:, None] * anchor_src
    scale, shift = torch.where(has_anchor, scale, 0), torch.where(has_anchor[:, None], shift, 0)
    return scale.reshape(batch_shape), shift.reshape(*batch_shape, 3)


def align_points_scale_z_shift(
    points_src: torch.Tensor, points_tgt: torch.Tensor, weight: torch.Tensor, trunc: Trunc = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Shared xyz scale s (...) and z shift t (..., 3) (x, y zero) minimising the (truncated)
    weighted L1 of s·src + t - tgt; points (..., N, 3), per-point weights (..., N) >= 0. Exact
    (every optimum matches some point's z). Only positive scales are meaningful; rows without a
    positive weight give s = 0 and t = 0."""
    return _align_points_scale_shift(points_src, points_tgt, weight, trunc, shift_z_only=True)


def align_points_scale_xyz_shift(
    points_src: torch.Tensor, points_tgt: torch.Tensor, weight: torch.Tensor, trunc: Trunc = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Shared scale s (...) and 3-D shift t (..., 3) as `align_points_scale_z_shift`, searched over
    shifts that match one whole point exactly (MoGe's restriction of the problem)."""
    return _align_points_scale_shift(points_src, points_tgt, weight, trunc, shift_z_only=False)


def align_points_z_shift(
    points_src: torch.Tensor, points_tgt: torch.Tensor, weight: torch.Tensor, trunc: Trunc = None
) -> torch.Tensor:
    """z shift only: t (..., 3) with t_x = t_y = 0 for points (..., N, 3), weights (..., N)."""
    z_shift = align(torch.ones_like(points_src[..., 2]), points_tgt[..., 2] - points_src[..., 2], weight, trunc)[0]
    zeros = torch.zeros_like(z_shift)
    return torch.stack([zeros, zeros, z_shift], dim=-1)


def align_points_xyz_shift(
    points_src: torch.Tensor, points_tgt: torch.Tensor, weight: torch.Tensor, trunc: Trunc = None
) -> torch.Tensor:
    """Independent per-coordinate shift t (..., 3) for points (..., N, 3), weights (..., N)."""
    difference = (points_tgt - points_src).transpose(-2, -1)
    return align(torch.ones_like(difference), difference, weight[..., None, :], trunc)[0]


def align_affine_lstsq(
    x: torch.Tensor, y: torch.Tensor, w: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Least-squares (a, b), each (...), of `min Σ w (a x + b - y)²` over the last dim of x, y, w
    (..., N); w None means unit weights."""
    root_w = torch.ones_like(x) if w is None else w.sqrt()
    design = torch.stack([root_w * x, root_w], dim=-1)
    solution = torch.linalg.lstsq(design, (root_w * y)[..., None]).solution
    return solution[..., 0, 0], solution[..., 1, 0]
