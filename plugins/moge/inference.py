"""MoGe's `infer`: a network's affine-invariant point map -> camera-space points, depth, mask and
normalised intrinsics (both versions), with the focal and z shift recovered by
`focal_shift.recover_focal_shift` or the shift alone when the horizontal FoV is given.
"""
import math
from numbers import Number
from typing import Dict, Optional, Union

import torch
from torch import nn

from .focal_shift import recover_focal_shift
from .geometry import depth_to_points, intrinsics_from_focal_center

DEFAULT_MASK_THRESHOLD = 0.5


def num_tokens_for_level(network: nn.Module, resolution_level: int) -> int:
    """MoGe's token count at `resolution_level` 0..9: linear over network.num_tokens_range."""
    low, high = network.num_tokens_range
    return int(low + resolution_level / 9 * (high - low))


def focal_from_fov_x(fov_x: Union[Number, torch.Tensor], aspect_ratio: float, batch: int,
                     device: torch.device) -> torch.Tensor:
    """(B,) focal lengths relative to the half image diagonal of horizontal FoVs in degrees
    (a number or a tensor of shape () or (B,))."""
    fov = torch.as_tensor(fov_x, dtype=torch.float32, device=device)
    focal = aspect_ratio / math.sqrt(1 + aspect_ratio**2) / torch.tan(torch.deg2rad(fov) / 2)
    return focal.expand(batch) if focal.ndim == 0 else focal.reshape(batch)


def intrinsics_from_diagonal_focal(focal: torch.Tensor, aspect_ratio: float) -> torch.Tensor:
    """(B, 3, 3) normalised intrinsics (principal point at the centre) of focal lengths (B,)
    relative to the half image diagonal."""
    half_diagonal = math.sqrt(1 + aspect_ratio**2)
    fx = focal / 2 * half_diagonal / aspect_ratio
    fy = focal / 2 * half_diagonal
    return intrinsics_from_focal_center(fx, fy, 0.5, 0.5)


def _autocast(device: torch.device, use_fp16: bool, network_dtype: torch.dtype):
    """Mixed precision for the forward pass when `use_fp16`: float16 on CUDA (as MoGe), bfloat16
    on the CPU (CPU autocast's fast type), float16 elsewhere; off when the network already is
    half precision."""
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    enabled = use_fp16 and network_dtype not in (torch.float16, torch.bfloat16)
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


@torch.no_grad()
def infer(
    network: nn.Module,
    image: torch.Tensor,
    fov_x: Optional[Union[Number, torch.Tensor]] = None,
    resolution_level: int = 9,
    num_tokens: Optional[int] = None,
    apply_mask: bool = True,
    force_projection: bool = True,
    use_fp16: bool = False,
) -> Dict[str, torch.Tensor]:
    """Camera-space geometry of images (B, 3, H, W) or (3, H, W) in [0, 1], as MoGe's infer.

    fov_x: horizontal field of view in degrees (number, () or (B,)); when given only the z shift
    is solved. resolution_level 0..9 picks the token count over network.num_tokens_range unless
    `num_tokens` is given. apply_mask: masked-out pixels get +inf points and depth (v2: zero
    normals). force_projection: rebuild the points from the depth and the intrinsics so that
    they project exactly onto their pixels (else the network's xy are kept, z shifted).
    use_fp16: run the network under autocast (float16 on CUDA, bfloat16 on the CPU); the
    post-processing is always float32.

    Returns, batched like the input: "points" (B, H, W, 3), "depth" (B, H, W) (v2: metric, times
    the predicted scale), "mask" (B, H, W) bool, "intrinsics" (B, 3, 3) normalised and, for v2
    networks with a normal head, "normal" (B, H, W, 3). Keys whose head the network lacks are
    left out. v1 thresholds the raw mask at network.mask_threshold, v2 the mask probability at
    0.5 and also drops pixels whose depth is not positive.
    """
    unbatched = image.dim() == 3
    if unbatched:
        image = image[None]
    parameter = next(network.parameters())
    image = image.to(device=parameter.device, dtype=parameter.dtype)
    batch, _, height, width = image.shape
    aspect_ratio = width / height
    if num_tokens is None:
        num_tokens = num_tokens_for_level(network, resolution_level)

    with _autocast(image.device, use_fp16, parameter.dtype):
        output = network(image, num_tokens)
    output = {key: value.float() for key, value in output.items() if value is not None}

    with torch.autocast(device_type=image.device.type, enabled=False):
        points = output.get("points")
        mask = output.get("mask")
        if mask is not None:
            mask = mask > getattr(network, "mask_threshold", DEFAULT_MASK_THRESHOLD)
        result: Dict[str, torch.Tensor] = {}
        if points is not None:
            if fov_x is None:
                focal, shift = recover_focal_shift(points, mask)
            else:
                focal = focal_from_fov_x(fov_x, aspect_ratio, batch, points.device)
                _, shift = recover_focal_shift(points, mask, focal=focal)
            intrinsics = intrinsics_from_diagonal_focal(focal, aspect_ratio)
            depth = points[..., 2] + shift[:, None, None]
            if network.version == "v2" and mask is not None:
                mask = mask & (depth > 0)
            if force_projection:
                points = depth_to_points(depth, intrinsics)
            else:
                points = torch.cat([points[..., :2], depth[..., None]], dim=-1)
            scale = output.get("metric_scale")
            if scale is not None:
                points = points * scale[:, None, None, None]
                depth = depth * scale[:, None, None]
            if apply_mask and mask is not None:
                points = torch.where(mask[..., None], points, torch.inf)
                depth = torch.where(mask, depth, torch.inf)
            result.update(points=points, depth=depth, intrinsics=intrinsics)
        normal = output.get("normal")
        if normal is not None:
            if apply_mask and mask is not None:
                normal = torch.where(mask[..., None], normal, 0.0)
            result["normal"] = normal
        if mask is not None:
            result["mask"] = mask

    if unbatched:
        result = {key: value[0] for key, value in result.items()}
    return result
