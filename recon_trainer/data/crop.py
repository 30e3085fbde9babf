"""Box crop and resize of frames, with the camera intrinsics kept consistent with the pixels.

Pixel coordinates are continuous: pixel (row i, column j) covers [j, j + 1] x [i, i + 1], so its
centre is (j + 0.5, i + 0.5). In these coordinates a camera with pytorch3d NDC intrinsics maps a
view-space point (X, Y, Z) to `x = cx - fx * X / Z`, `y = cy - fy * Y / Z` (x left and y up in NDC
become x right and y down in pixels), where, with s = min(H, W) / 2,
`fx = fx_ndc * s`, `cx = W / 2 - px_ndc * s` (and likewise for y with H).

A crop to the box [x0, x1) x [y0, y1) shifts the principal point by (-x0, -y0); a resize by
(sx, sy) = (new_w / w, new_h / h) scales focal and principal point per axis; padding on the
bottom / right leaves both unchanged. So a 3D point projects onto the same image content before
and after (up to interpolation).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from recon_trainer.data.cameras import PerspectiveCameras

# Lowering step of the mask threshold when no pixel passes it (as Implicitron's loader does).
_THRESHOLD_STEP = 0.05


def intrinsics_ndc_to_pixels(
    focal_ndc: torch.Tensor, principal_ndc: torch.Tensor, image_size_hw: Tuple[int, int]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(..., 2) NDC focal and principal point (x, y) to pixels for an image of (H, W) (module doc)."""
    h, w = image_size_hw
    scale = min(h, w) / 2.0
    half_wh = torch.tensor([w / 2.0, h / 2.0], dtype=focal_ndc.dtype)
    return focal_ndc * scale, half_wh - principal_ndc * scale


def intrinsics_pixels_to_ndc(
    focal_pix: torch.Tensor, principal_pix: torch.Tensor, image_size_hw: Tuple[int, int]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The inverse of `intrinsics_ndc_to_pixels`."""
    h, w = image_size_hw
    scale = min(h, w) / 2.0
    half_wh = torch.tensor([w / 2.0, h / 2.0], dtype=focal_pix.dtype)
    return focal_pix / scale, (half_wh - principal_pix) / scale


def bbox_from_mask(mask: torch.Tensor, threshold: float) -> Optional[Tuple[int, int, int, int]]:
    """(x0, y0, w, h) pixel box around `mask` (H, W) > threshold; None when the mask is empty.

    When fewer than two pixels pass, the threshold is lowered in steps of 0.05 until some do.
    """
    while threshold > 0.0:
        passing = mask > threshold
        if int(passing.sum()) > 1:
            break
        threshold -= _THRESHOLD_STEP
    else:
        passing = mask > 0.0
        if not bool(passing.any()):
            return None
    cols = torch.nonzero(passing.any(dim=0))[:, 0]
    rows = torch.nonzero(passing.any(dim=1))[:, 0]
    x0, x1, y0, y1 = int(cols[0]), int(cols[-1]) + 1, int(rows[0]), int(rows[-1]) + 1
    return x0, y0, x1 - x0, y1 - y0


def crop_box_with_context(
    bbox_xywh: Tuple[float, float, float, float], context: float, image_size_hw: Tuple[int, int]
) -> Tuple[int, int, int, int]:
    """The integer crop box (x0, y0, x1, y1), x1 / y1 exclusive, around bbox_xywh.

    The box grows by `context` times its size (half on each side), is at least 2 pixels wide and
    high, is clipped to the image and rounded to whole pixels.
    """
    x0, y0, w, h = (float(v) for v in bbox_xywh)
    x0, y0 = x0 - w * context / 2.0, y0 - h * context / 2.0
    w, h = max(w * (1.0 + context), 2.0), max(h * (1.0 + context), 2.0)
    height, width = image_size_hw
    box = [min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x0 + w, 0.0), width),
           min(max(y0 + h, 0.0), height)]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise ValueError(f"crop box {(x0, y0, x1, y1)} of bbox {bbox_xywh} holds no pixel of a {height}x{width} image")
    return x0, y0, x1, y1


def crop_image(image: torch.Tensor, box_xyxy: Tuple[int, int, int, int]) -> torch.Tensor:
    """(C, H, W) -> (C, y1 - y0, x1 - x0), the pixels inside the box."""
    x0, y0, x1, y1 = box_xyxy
    return image[:, y0:y1, x0:x1]


def scale_box(
    box_xyxy: Tuple[int, int, int, int], from_hw: Tuple[int, int], to_hw: Tuple[int, int]
) -> Tuple[int, int, int, int]:
    """A crop box of an image of size from_hw for the same view stored at size to_hw (e.g. depth)."""
    if tuple(from_hw) == tuple(to_hw):
        return box_xyxy
    sx, sy = to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]
    x0, y0, x1, y1 = box_xyxy
    return int(round(x0 * sx)), int(round(y0 * sy)), int(round(x1 * sx)), int(round(y1 * sy))


def fit_size(size_hw: Tuple[int, int], out_hw: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    """The size (h, w) of an image of size_hw scaled to fit in out_hw, aspect ratio kept."""
    if out_hw is None:
        return tuple(size_hw)
    h, w = size_hw
    scale = min(out_hw[0] / h, out_hw[1] / w)
    return max(1, min(out_hw[0], int(round(h * scale)))), max(1, min(out_hw[1], int(round(w * scale))))


def resize_and_pad(
    image: torch.Tensor, out_hw: Optional[Tuple[int, int]], mode: str
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scale (C, h, w) to fit in out_hw (aspect kept), placed top-left on a zero canvas.

    mode: "bilinear" (colour, soft masks) or "nearest" (depth, binary masks; pixel-centre exact).
    Returns the (C, H_out, W_out) image and the (1, H_out, W_out) mask_crop, 1 on the image
    pixels and 0 on the padding. out_hw None keeps the size (mask_crop all ones).
    """
    c, h, w = image.shape
    new_h, new_w = fit_size((h, w), out_hw)
    if (new_h, new_w) != (h, w):
        interpolation = {"bilinear": "bilinear", "nearest": "nearest-exact"}[mode]
        extra = {"align_corners": False} if mode == "bilinear" else {}
        image = torch.nn.functional.interpolate(image[None].float(), size=(new_h, new_w), mode=interpolation,
                                                **extra)[0]
    out_h, out_w = (new_h, new_w) if out_hw is None else out_hw
    canvas = image.new_zeros(c, out_h, out_w)
    canvas[:, :new_h, :new_w] = image
    mask_crop = image.new_zeros(1, out_h, out_w)
    mask_crop[:, :new_h, :new_w] = 1.0
    return canvas, mask_crop


def crop_resize_camera(
    camera: PerspectiveCameras,
    image_size_hw: Tuple[int, int],
    box_xyxy: Optional[Tuple[int, int, int, int]],
    out_hw: Optional[Tuple[int, int]],
) -> PerspectiveCameras:
    """The camera (N=1) of an (H, W) image after `crop_image(box)` and `resize_and_pad(out_hw)`.

    box None: no crop. The result's image_size is the output size.
    """
    focal, principal = intrinsics_ndc_to_pixels(camera.focal_length[0].double(),
                                                camera.principal_point[0].double(), image_size_hw)
    h, w = image_size_hw
    if box_xyxy is not None:
        x0, y0, x1, y1 = box_xyxy
        principal = principal - torch.tensor([x0, y0], dtype=principal.dtype)
        h, w = y1 - y0, x1 - x0
    new_h, new_w = fit_size((h, w), out_hw)
    scale = torch.tensor([new_w / w, new_h / h], dtype=focal.dtype)
    out = (new_h, new_w) if out_hw is None else tuple(out_hw)
    focal_ndc, principal_ndc = intrinsics_pixels_to_ndc(focal * scale, principal * scale, out)
    dtype = camera.focal_length.dtype
    return PerspectiveCameras(
        R=camera.R.clone(),
        T=camera.T.clone(),
        focal_length=focal_ndc[None].to(dtype),
        principal_point=principal_ndc[None].to(dtype),
        image_size=torch.tensor([out], dtype=torch.long),
    )
