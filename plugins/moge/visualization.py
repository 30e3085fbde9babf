"""Images of MoGe's predictions for the loggers: depth, normals and mask beside the ground truth."""
from __future__ import annotations

from typing import Dict, Optional

import torch

from recon_trainer.visualization.video import colorize_depth

from .batch import MoGeBatch
from .geometry import points_to_normals


def normal_colors(normals: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(H, W, 3) unit normals (OpenCV camera axes) as (3, H, W) colours in [0, 1]: x right is red,
    y up is green, towards the camera is blue (the usual normal-map colouring); black where `mask`
    (H, W) is False or the normal is not finite."""
    colors = (normals * torch.tensor([0.5, -0.5, -0.5], device=normals.device) + 0.5).clamp(0, 1)
    valid = torch.isfinite(normals).all(dim=-1)
    if mask is not None:
        valid &= mask
    return torch.where(valid[..., None], colors.nan_to_num(0.0), 0.0).permute(2, 0, 1).float().cpu()


def _depth_panel(depth: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(H, W) depth as (3, H, W) colours over its valid pixels."""
    safe = torch.where(valid, depth, torch.zeros_like(depth))
    return colorize_depth(safe[None, None].float().cpu(), valid[None, None].float().cpu())[0]


def _row(image: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor, normals: torch.Tensor,
         mask: torch.Tensor) -> torch.Tensor:
    mask_panel = mask.float().cpu()[None].expand(3, -1, -1)
    return torch.cat([image.float().cpu().clamp(0, 1), _depth_panel(depth, valid), normal_colors(normals, valid),
                      mask_panel], dim=-1)


def geometry_panels(item: MoGeBatch, output: Dict[str, torch.Tensor]) -> torch.Tensor:
    """(3, 2 H, 4 W): the image, depth, normals and mask of the prediction `output` (inference.infer
    on the one-item batch `item`, unbatched: depth (H, W), points (H, W, 3), mask (H, W)) on top,
    and of the ground truth (depth, normals from its point map, finite-depth mask) below."""
    image = item.image[0]
    depth, mask = output["depth"], output["mask"]
    normals = output.get("normal")
    if normals is None:
        normals = points_to_normals(output["points"][None], mask[None])[0][0]
    top = _row(image, depth, mask & torch.isfinite(depth), normals, mask)
    gt_depth, gt_valid = item.depth[0], item.depth_mask_fin[0] & torch.isfinite(item.depth[0])
    gt_normals = points_to_normals(item.points(), gt_valid[None])[0][0]
    bottom = _row(image, gt_depth, gt_valid, gt_normals, gt_valid)
    return torch.cat([top, bottom], dim=-2)
