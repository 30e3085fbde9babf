"""CO3D viewpoint annotations <-> PerspectiveCameras (pytorch3d NDC, isotropic).

The two intrinsics formats of the released files, for an image of (H, W) pixels (half size
(w2, h2) = (W / 2, H / 2)); in pixels x_pix = cx - fx * X / Z (see recon_trainer/data/crop.py):
- "ndc_norm_image_bounds" (CO3D v1): fx = f_x * w2, fy = f_y * h2, (cx, cy) = (w2, h2) - p * (w2, h2);
- "ndc_isotropic" (CO3D v2, pytorch3d >= 0.5): the same with both scales min(w2, h2).
"""
from __future__ import annotations

from typing import Tuple

import torch

from recon_trainer.data.cameras import PerspectiveCameras
from recon_trainer.data.crop import intrinsics_pixels_to_ndc
from recon_trainer.data.providers.co3d.annotations import INTRINSICS_FORMATS, ViewpointAnnotation


def _format_scale(intrinsics_format: str, image_size_hw: Tuple[int, int]) -> torch.Tensor:
    """(2,) pixels per NDC unit along x and y of the format."""
    h, w = image_size_hw
    half_wh = torch.tensor([w / 2.0, h / 2.0], dtype=torch.float64)
    if intrinsics_format == "ndc_norm_image_bounds":
        return half_wh
    if intrinsics_format == "ndc_isotropic":
        return half_wh.min().expand(2)
    raise ValueError(f"unknown intrinsics_format {intrinsics_format!r}: expected one of {list(INTRINSICS_FORMATS)}")


def camera_from_viewpoint(viewpoint: ViewpointAnnotation, image_size_hw: Tuple[int, int]) -> PerspectiveCameras:
    """A single camera (N=1, float32) of an image of image_size_hw (H, W) from its annotation."""
    h, w = image_size_hw
    scale = _format_scale(viewpoint.intrinsics_format, image_size_hw)
    half_wh = torch.tensor([w / 2.0, h / 2.0], dtype=torch.float64)
    focal_pix = torch.tensor(viewpoint.focal_length, dtype=torch.float64) * scale
    principal_pix = half_wh - torch.tensor(viewpoint.principal_point, dtype=torch.float64) * scale
    focal, principal = intrinsics_pixels_to_ndc(focal_pix, principal_pix, image_size_hw)
    return PerspectiveCameras(
        R=torch.tensor(viewpoint.R, dtype=torch.float32)[None],
        T=torch.tensor(viewpoint.T, dtype=torch.float32)[None],
        focal_length=focal.float()[None],
        principal_point=principal.float()[None],
        image_size=torch.tensor([[h, w]], dtype=torch.long),
    )


def viewpoint_from_camera(
    camera: PerspectiveCameras, image_size_hw: Tuple[int, int], intrinsics_format: str
) -> ViewpointAnnotation:
    """The annotation of camera[0] for an image of image_size_hw in the given intrinsics format."""
    h, w = image_size_hw
    short_half = min(h, w) / 2.0
    half_wh = torch.tensor([w / 2.0, h / 2.0], dtype=torch.float64)
    focal_pix = camera.focal_length[0].double() * short_half
    principal_pix = half_wh - camera.principal_point[0].double() * short_half
    scale = _format_scale(intrinsics_format, image_size_hw)
    return ViewpointAnnotation(
        R=tuple(tuple(float(v) for v in row) for row in camera.R[0].tolist()),
        T=tuple(float(v) for v in camera.T[0].tolist()),
        focal_length=tuple(float(v) for v in (focal_pix / scale).tolist()),
        principal_point=tuple(float(v) for v in ((half_wh - principal_pix) / scale).tolist()),
        intrinsics_format=intrinsics_format,
    )
