"""Multi-scale deformable attention (Deformable DETR), as mmcv 2.1's `MultiScaleDeformableAttention`.

Symphonies uses mmcv's module everywhere (image cross-attention, voxel proposal, squeeze attention).
This module reproduces that module's parameters (names `sampling_offsets`, `attention_weights`,
`value_proj`, `output_proj`), its initialisation and its forward, which returns
`dropout(output_proj(sampled)) + identity` with `identity = query` (before `query_pos` is added).

The sampling core has three implementations with the same semantics:
- `multi_scale_deformable_sampling`: plain torch via `F.grid_sample` (bilinear, zero padding,
  align_corners=False), the default on every device;
- `multi_scale_deformable_sampling_reference`: a per-point loop with the bilinear weights written out,
  only for parity tests;
- mmcv's compiled CUDA op, used for CUDA tensors when `mmcv.ops` with its compiled extension imports
  (looked up once, lazily). Set `FORCE_TORCH_PATH = True` (or `use_torch_path(True)`) to never use it.

Locations are normalised to [0, 1] over each level's map: x over the width W, y over the height H; the
centre of pixel (i, j) (row i, column j) is at ((j + 0.5) / W, (i + 0.5) / H).
"""
from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

# True: always the grid_sample path, even where mmcv's compiled op is available
FORCE_TORCH_PATH = False
_MMCV_FUNCTION: List[Any] = []  # [] = not looked up yet, [None] = unavailable, [Function] = available

ShapesLike = Union[torch.Tensor, Sequence[Tuple[int, int]]]


def use_torch_path(flag: bool = True) -> None:
    """Force (True) or allow (False) the plain torch sampling path instead of mmcv's compiled op."""
    global FORCE_TORCH_PATH
    FORCE_TORCH_PATH = bool(flag)


def mmcv_deformable_attention_function() -> Optional[Any]:
    """mmcv's `MultiScaleDeformableAttnFunction` if `mmcv.ops` and its compiled extension import, else None.

    The result is cached: the import is tried once per process.
    """
    if not _MMCV_FUNCTION:
        function = None
        try:
            from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction
            from mmcv.utils import ext_loader

            ext_loader.load_ext("_ext", ["ms_deform_attn_forward", "ms_deform_attn_backward"])
            function = MultiScaleDeformableAttnFunction
        except Exception:  # mmcv absent, or a build without compiled ops
            function = None
        _MMCV_FUNCTION.append(function)
    return _MMCV_FUNCTION[0]


def shapes_as_list(spatial_shapes: ShapesLike) -> List[Tuple[int, int]]:
    """(L, 2) shapes (a tensor or pairs) as a list of (H, W) Python ints."""
    if isinstance(spatial_shapes, torch.Tensor):
        return [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    return [(int(h), int(w)) for h, w in spatial_shapes]


def shapes_as_tensor(spatial_shapes: ShapesLike, device: torch.device) -> torch.Tensor:
    """(L, 2) int64 tensor of (H, W) on `device`."""
    if isinstance(spatial_shapes, torch.Tensor):
        return spatial_shapes.to(device=device, dtype=torch.long)
    return torch.tensor([list(shape) for shape in spatial_shapes], dtype=torch.long, device=device)


def level_start_index(spatial_shapes: ShapesLike, device: Optional[torch.device] = None) -> torch.Tensor:
    """(L,) int64 offsets of each level in the flattened value: [0, H0*W0, H0*W0 + H1*W1, ...]."""
    sizes = [h * w for h, w in shapes_as_list(spatial_shapes)]
    starts = [0]
    for size in sizes[:-1]:
        starts.append(starts[-1] + size)
    return torch.tensor(starts, dtype=torch.long, device=device)


def _check_sampling_inputs(value: torch.Tensor, shapes: List[Tuple[int, int]], sampling_locations: torch.Tensor,
                           attention_weights: torch.Tensor) -> None:
    if value.dim() != 4:
        raise ValueError(f"value: expected (B, S, heads, head_dims), got shape {tuple(value.shape)}")
    if sum(h * w for h, w in shapes) != value.shape[1]:
        raise ValueError(f"value has {value.shape[1]} keys but spatial_shapes {shapes} hold "
                         f"{sum(h * w for h, w in shapes)}")
    if sampling_locations.dim() != 6 or sampling_locations.shape[3] != len(shapes):
        raise ValueError(f"sampling_locations: expected (B, Q, heads, {len(shapes)}, P, 2), "
                         f"got {tuple(sampling_locations.shape)}")
    if attention_weights.shape != sampling_locations.shape[:-1]:
        raise ValueError(f"attention_weights: expected {tuple(sampling_locations.shape[:-1])}, "
                         f"got {tuple(attention_weights.shape)}")


def multi_scale_deformable_sampling(value: torch.Tensor, spatial_shapes: ShapesLike,
                                    sampling_locations: torch.Tensor,
                                    attention_weights: torch.Tensor) -> torch.Tensor:
    """Weighted bilinear samples of a multi-level value map, with `F.grid_sample` (any device).

    Args:
        value: (B, S, heads, Dh), S = sum of H_l * W_l, levels flattened row-major one after another.
        spatial_shapes: (L, 2) (H_l, W_l) per level, int64 tensor or pairs of ints.
        sampling_locations: (B, Q, heads, L, P, 2) normalised (x, y) in [0, 1] (outside = zero padding).
        attention_weights: (B, Q, heads, L, P), the weight of each sample (softmaxed by the caller).
    Returns:
        (B, Q, heads * Dh): per head, sum over levels and points of weight * bilinear sample.
    """
    shapes = shapes_as_list(spatial_shapes)
    _check_sampling_inputs(value, shapes, sampling_locations, attention_weights)
    batch, _, heads, head_dims = value.shape
    queries, points = sampling_locations.shape[1], sampling_locations.shape[4]
    grids = sampling_locations.to(value.dtype) * 2 - 1  # grid_sample's [-1, 1] (align_corners=False)
    weights = attention_weights.to(value.dtype)
    output = value.new_zeros(batch * heads, head_dims, queries)
    for level, value_level in enumerate(value.split([h * w for h, w in shapes], dim=1)):
        height, width = shapes[level]
        # (B, H*W, heads, Dh) -> (B*heads, Dh, H, W)
        value_map = value_level.permute(0, 2, 3, 1).reshape(batch * heads, head_dims, height, width)
        # (B, Q, heads, P, 2) -> (B*heads, Q, P, 2)
        grid = grids[:, :, :, level].transpose(1, 2).reshape(batch * heads, queries, points, 2)
        sampled = F.grid_sample(value_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # (B, Q, heads, P) -> (B*heads, 1, Q, P)
        weight = weights[:, :, :, level].transpose(1, 2).reshape(batch * heads, 1, queries, points)
        output = output + (sampled * weight).sum(-1)
    # (B*heads, Dh, Q) -> (B, Q, heads*Dh)
    return output.view(batch, heads * head_dims, queries).transpose(1, 2).contiguous()


def _bilinear_sample_reference(value_map: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """value_map (Dh, H, W) at normalised (x, y): bilinear, zero outside, pixel centres at (j + 0.5) / W."""
    _, height, width = value_map.shape
    column = x * width - 0.5
    row = y * height - 0.5
    column0, row0 = math.floor(column), math.floor(row)
    result = value_map.new_zeros(value_map.shape[0])
    for row_index, row_weight in ((row0, row0 + 1 - row), (row0 + 1, row - row0)):
        for column_index, column_weight in ((column0, column0 + 1 - column), (column0 + 1, column - column0)):
            if 0 <= row_index < height and 0 <= column_index < width:
                result = result + value_map[:, row_index, column_index] * (row_weight * column_weight)
    return result


def multi_scale_deformable_sampling_reference(value: torch.Tensor, spatial_shapes: ShapesLike,
                                              sampling_locations: torch.Tensor,
                                              attention_weights: torch.Tensor) -> torch.Tensor:
    """`multi_scale_deformable_sampling` as a plain loop over every sample point (slow; for tests).

    Same arguments and result; the bilinear interpolation is written out by hand.
    """
    shapes = shapes_as_list(spatial_shapes)
    _check_sampling_inputs(value, shapes, sampling_locations, attention_weights)
    batch, _, heads, head_dims = value.shape
    queries, levels, points = sampling_locations.shape[1], sampling_locations.shape[3], sampling_locations.shape[4]
    starts = level_start_index(shapes).tolist()
    output = value.new_zeros(batch, queries, heads, head_dims)
    for b in range(batch):
        for head in range(heads):
            maps = [value[b, start:start + h * w, head].t().reshape(head_dims, h, w)
                    for start, (h, w) in zip(starts, shapes)]
            for q in range(queries):
                total = value.new_zeros(head_dims)
                for level in range(levels):
                    for p in range(points):
                        x, y = sampling_locations[b, q, head, level, p].tolist()
                        total = total + attention_weights[b, q, head, level, p] * \
                            _bilinear_sample_reference(maps[level], x, y)
                output[b, q, head] = total
    return output.reshape(batch, queries, heads * head_dims)


def multi_scale_deformable_attention_core(value: torch.Tensor, spatial_shapes: ShapesLike,
                                          sampling_locations: torch.Tensor, attention_weights: torch.Tensor,
                                          im2col_step: int = 64) -> torch.Tensor:
    """The sampling core: mmcv's compiled op for CUDA tensors when available (and not forced off),
    otherwise `multi_scale_deformable_sampling`. Arguments and result as that function."""
    if value.is_cuda and not FORCE_TORCH_PATH:
        function = mmcv_deformable_attention_function()
        if function is not None:
            shapes = shapes_as_tensor(spatial_shapes, value.device)
            starts = level_start_index(shapes_as_list(spatial_shapes), value.device)
            return function.apply(value, shapes, starts, sampling_locations.to(value.dtype),
                                  attention_weights.to(value.dtype), im2col_step)
    return multi_scale_deformable_sampling(value, spatial_shapes, sampling_locations, attention_weights)


class MultiScaleDeformableAttention(nn.Module):
    """Deformable attention over L feature levels, batch-first, as mmcv 2.1's module of the same name.

    Parameters (names as mmcv's): sampling_offsets Linear(C, heads*L*P*2), attention_weights
    Linear(C, heads*L*P), value_proj Linear(C, C), output_proj Linear(C, C).
    Initialisation: offsets weight 0 and bias = per-head unit directions (angle 2*pi*h/heads, scaled so the
    larger component is 1) times (p + 1) for point p; attention weights 0; value/output projections
    Xavier-uniform with zero bias.

    Args:
        embed_dims: C. num_heads, num_levels, num_points: heads, L, P.
        dropout: dropout on the output before the identity is added (mmcv's default 0.1).
        im2col_step: passed to mmcv's compiled op when that is used.
    """

    def __init__(self, embed_dims: int = 256, num_heads: int = 8, num_levels: int = 4, num_points: int = 4,
                 dropout: float = 0.1, im2col_step: int = 64) -> None:
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(f"embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})")
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.im2col_step = im2col_step
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dims, embed_dims)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """mmcv's initialisation (see the class docstring)."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        directions = torch.stack([angles.cos(), angles.sin()], dim=-1)
        directions = directions / directions.abs().max(dim=-1, keepdim=True).values
        scales = torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        bias = directions.view(self.num_heads, 1, 1, 2) * scales  # (heads, 1, P, 2)
        bias = bias.expand(self.num_heads, self.num_levels, self.num_points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for linear in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def sampling(self, query: torch.Tensor, reference_points: torch.Tensor,
                 spatial_shapes: ShapesLike) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sampling locations (B, Q, heads, L, P, 2) and softmaxed weights (B, Q, heads, L, P) of `query`
        (B, Q, C) (query_pos already added) around `reference_points` (B, Q, L, 2) normalised (x, y);
        offsets are in pixels of each level (divided by (W_l, H_l))."""
        batch, queries, _ = query.shape
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        if reference_points.shape[-1] != 2 or reference_points.shape[-2] != levels:
            raise ValueError(f"reference_points: expected (B, Q, {levels}, 2), got {tuple(reference_points.shape)}")
        offsets = self.sampling_offsets(query).view(batch, queries, heads, levels, points, 2)
        weights = self.attention_weights(query).view(batch, queries, heads, levels * points).softmax(-1)
        weights = weights.view(batch, queries, heads, levels, points)
        sizes = shapes_as_tensor(spatial_shapes, query.device).flip(-1).to(offsets.dtype)  # (L, 2) as (W, H)
        locations = reference_points[:, :, None, :, None, :] + offsets / sizes[None, None, None, :, None, :]
        return locations, weights

    def forward(self, query: torch.Tensor, value: Optional[torch.Tensor] = None,
                identity: Optional[torch.Tensor] = None, query_pos: Optional[torch.Tensor] = None,
                key_padding_mask: Optional[torch.Tensor] = None,
                reference_points: Optional[torch.Tensor] = None,
                spatial_shapes: Optional[ShapesLike] = None) -> torch.Tensor:
        """Attend from `query` to the multi-level `value`.

        Args:
            query: (B, Q, C). value: (B, S, C) flattened levels (default: query).
            identity: added to the result (default: `query`, before query_pos).
            query_pos: (B, Q, C) added to the query for offsets and weights, or None.
            key_padding_mask: (B, S) bool, True = value entry zeroed, or None.
            reference_points: (B, Q, L, 2) normalised (x, y) in [0, 1].
            spatial_shapes: (L, 2) (H_l, W_l), int64 tensor or pairs.
        Returns:
            (B, Q, C) = dropout(output_proj(samples)) + identity.
        """
        if reference_points is None or spatial_shapes is None:
            raise ValueError("MultiScaleDeformableAttention needs reference_points and spatial_shapes")
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        batch, keys, _ = value.shape
        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(batch, keys, self.num_heads, -1)
        locations, weights = self.sampling(query, reference_points, spatial_shapes)
        sampled = multi_scale_deformable_attention_core(value, spatial_shapes, locations, weights, self.im2col_step)
        return self.dropout(self.output_proj(sampled)) + identity
