"""Mask-aware nearest-neighbour resizing of maps (the resampling MoGe's losses and metrics use).

Each output pixel covers a footprint of the input of ceil(H/h) x ceil(W/w) pixels (at least 1 x 1)
placed around its centre; it takes the value of the valid input pixel in that footprint whose
centre is nearest to its own centre (the first one in row-major order on ties). Its output mask
says whether the footprint held any valid pixel; where it did not, the value is a placeholder
(the footprint's top-left pixel, or pixel (0, 0) when that lies outside the image) and must be
ignored. Centres and footprint positions are computed in float32 so that the chosen pixels are
the same as in MoGe's dependency utils3d.
"""
import math
from typing import Tuple

import torch


def _axis_footprints(out_size: int, in_size: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Along one axis: the input indices (out_size, k) of each output pixel's footprint and their
    squared float32 distances (out_size, k) from the output pixel's centre, in input pixels."""
    footprint = max(1.0, in_size / out_size)
    centres = torch.linspace(0.5 / out_size, 1 - 0.5 / out_size, out_size, dtype=torch.float32, device=device)
    centres = centres * torch.tensor(float(in_size), dtype=torch.float32, device=device)
    first = torch.round(centres - torch.tensor(footprint / 2, dtype=torch.float32, device=device)).to(torch.long)
    indices = first[:, None] + torch.arange(math.ceil(footprint), device=device)
    distance = (indices.to(torch.float32) + 0.5) - centres[:, None]
    return indices, distance.square()


def masked_nearest_resize(
    *image: torch.Tensor, mask: torch.Tensor, size: Tuple[int, int], return_index: bool = False
) -> tuple:
    """Resize maps to `size` = (h, w) by nearest sampling among valid pixels.

    image: any number of maps (..., H, W) or (..., H, W, C) sharing the leading dims of `mask`
    (..., H, W) bool. Returns (*resized (..., h, w[, C]), resized_mask (..., h, w) bool) and, with
    return_index, also the index tuple (*batch_indices, rows, cols) (each broadcastable to
    (..., h, w)) that picks the resized values out of the input maps."""
    device = mask.device
    height, width = mask.shape[-2:]
    out_h, out_w = size
    rows, row_distance = _axis_footprints(out_h, height, device)  # (h, kh)
    cols, col_distance = _axis_footprints(out_w, width, device)  # (w, kw)
    kh, kw = rows.shape[1], cols.shape[1]

    # Footprints as (h, w, kh, kw) grids of input pixels.
    grid_rows = rows[:, None, :, None].expand(out_h, out_w, kh, kw)
    grid_cols = cols[None, :, None, :].expand(out_h, out_w, kh, kw)
    inside = (grid_rows >= 0) & (grid_rows < height) & (grid_cols >= 0) & (grid_cols < width)
    valid = inside & mask[..., grid_rows.clamp(0, height - 1), grid_cols.clamp(0, width - 1)]
    distance = col_distance[None, :, None, :] + row_distance[:, None, :, None]  # (h, w, kh, kw)
    distance = torch.where(valid, distance, torch.inf).flatten(-2)
    chosen = distance.argmin(dim=-1)  # (..., h, w); a footprint without valid pixels gives 0
    chosen_rows = rows[:, :1] + torch.div(chosen, kw, rounding_mode="floor")
    chosen_cols = cols[:, 0] + chosen % kw
    outside = (chosen_rows < 0) | (chosen_rows >= height) | (chosen_cols < 0) | (chosen_cols >= width)
    chosen_rows = torch.where(outside, 0, chosen_rows)
    chosen_cols = torch.where(outside, 0, chosen_cols)

    leading = mask.shape[:-2]
    batch_indices = tuple(
        torch.arange(n, device=device).reshape((1,) * i + (n,) + (1,) * (len(leading) - i + 1))
        for i, n in enumerate(leading)
    )
    index = (*batch_indices, chosen_rows, chosen_cols)
    resized = tuple(x[index] for x in image)
    resized_mask = valid.flatten(-2).any(dim=-1)
    if return_index:
        return (*resized, resized_mask, index)
    return (*resized, resized_mask)
