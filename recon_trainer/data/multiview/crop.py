"""DUSt3R's crop and resize of a view (dust3r/datasets/base/base_stereo_view_dataset.py,
`_crop_resize_if_necessary`, as Spann3R's copy runs it), on ViewRecords.

1. Crop the largest window centred on the principal point: the principal point in integer-centre
   pixels (OpenCV) is rounded to (cx, cy) and the window is [cx - m_x, cx + m_x) x [cy - m_y, cy + m_y)
   with m_x = min(cx, W - cx), m_y = min(cy, H - cy). Spann3R requires m_x > W / 5 and m_y > H / 5
   (`min_margin`); a view whose principal point is closer to the border is a DataFileError.
2. Orientation: the target (W_t, H_t) (landscape) is transposed for a portrait window (H > 1.1 W),
   and with probability 1/2 for a near-square one (0.9 < H / W < 1.1) when W_t != H_t.
3. Resize with Lanczos (image; Spann3R's copy uses Lanczos for up- and down-scaling, newer DUSt3R
   bicubic for upscaling) and nearest (depth, masks) by the factor
   s = max(W_t' / W, H_t' / H) + 1e-8 to floor(W s) x floor(H s), where (W_t', H_t') is the target
   plus one random integer in [0, aug_crop) added to both sides when aug_crop > 1.
4. Crop the target size out of the centre (a half-pixel offset is taken to the left / top).

Nearest sampling is OpenCV's INTER_NEAREST (source index floor(i * in / out)), so depth and masks
equal DUSt3R's. The intrinsics follow the pixels exactly in the records' convention (a resize
scales the pixel corners by out / in per axis); DUSt3R's own K update scales by s instead, which
differs by under 1 / min(W_t, H_t) relative.

The image is resampled as 8-bit RGB (PIL, as DUSt3R does): a float image in [0, 1] is rounded to
multiples of 1/255 first (exact for images read from 8-bit files).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.data.records import ViewRecord, image_tensor, intrinsics_corner_to_centre
from recon_trainer.errors import DataFileError

SPANN3R_MIN_MARGIN = 0.2  # Spann3R: the principal point's window margins exceed 1/5 of the image


def crop_resize_like_dust3r(
    view: ViewRecord,
    resolution_wh: Tuple[int, int],
    aug_crop: int = 0,
    generator: Optional[torch.Generator] = None,
    min_margin: float = SPANN3R_MIN_MARGIN,
) -> ViewRecord:
    """`view` cropped and resized to `resolution_wh` (W, H), W >= H, or its transpose (module doc).

    image (3, H, W) in [0, 1], depth (H, W), mask_fg / mask_valid (H, W) and intrinsics (3, 3)
    (records' convention) follow the pixels; pose, ids and extras are kept as they are. generator: the random
    orientation of near-square views and the aug_crop draw (None: torch's global RNG).
    DataFileError (naming view.path) when the principal point is too close to a border.
    """
    if resolution_wh[0] < resolution_wh[1]:
        raise ValueError(f"crop_resize_like_dust3r: resolution {resolution_wh} must be landscape (W >= H)")
    height, width = view.image_size_hw
    principal = intrinsics_corner_to_centre(view.intrinsics.double())[:2, 2].numpy()
    cx, cy = (int(v) for v in np.round(principal))
    margin_x, margin_y = min(cx, width - cx), min(cy, height - cy)
    if min(margin_x, margin_y) < 1 or margin_x <= min_margin * width or margin_y <= min_margin * height:
        raise DataFileError(f"{view.path or view.sequence}: principal point ({principal[0]:.1f}, {principal[1]:.1f}) "
                            f"is too close to the border of the {width}x{height} image (margins must exceed "
                            f"{min_margin:g} of its size)")
    view = crop_view(view, (cx - margin_x, cy - margin_y, cx + margin_x, cy + margin_y))
    target = _oriented(resolution_wh, view.image_size_hw, generator)
    extra = int(torch.randint(0, aug_crop, (), generator=generator)) if aug_crop > 1 else 0
    height, width = view.image_size_hw
    scale = max((target[0] + extra) / width, (target[1] + extra) / height) + 1e-8
    view = resize_view(view, (math.floor(width * scale), math.floor(height * scale)))
    height, width = view.image_size_hw
    left, top = (width - target[0]) // 2, (height - target[1]) // 2
    return crop_view(view, (left, top, left + target[0], top + target[1]))


def _oriented(resolution_wh: Tuple[int, int], size_hw: Tuple[int, int], generator: Optional[torch.Generator]
              ) -> Tuple[int, int]:
    """The target (W, H) for a window of size_hw: transposed for portrait windows, at random for
    near-square ones (module doc, step 2)."""
    height, width = size_hw
    flipped = (resolution_wh[1], resolution_wh[0])
    if height > 1.1 * width:
        return flipped
    if 0.9 < height / width < 1.1 and resolution_wh[0] != resolution_wh[1]:
        return flipped if int(torch.randint(0, 2, (), generator=generator)) else tuple(resolution_wh)
    return tuple(resolution_wh)


def crop_view(view: ViewRecord, box_ltrb: Tuple[int, int, int, int]) -> ViewRecord:
    """The pixels [l, r) x [t, b) of `view` (inside the image) with the principal point shifted."""
    left, top, right, bottom = box_ltrb
    intrinsics = view.intrinsics.clone()
    intrinsics[0, 2] -= left
    intrinsics[1, 2] -= top
    crop = {name: None if value is None else value[..., top:bottom, left:right]
            for name, value in _pixel_fields(view).items()}
    return dataclasses.replace(view, intrinsics=intrinsics, **crop)


def resize_view(view: ViewRecord, size_wh: Tuple[int, int]) -> ViewRecord:
    """`view` resized to size_wh (W, H): Lanczos image, OpenCV-nearest depth and masks, K scaled."""
    height, width = view.image_size_hw
    out_w, out_h = size_wh
    rgb = np.round(view.image.clamp(0.0, 1.0).permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)
    resized = np.asarray(Image.fromarray(rgb).resize((out_w, out_h), resample=Image.Resampling.LANCZOS))
    rows, cols = nearest_indices(height, out_h), nearest_indices(width, out_w)
    fields = {name: None if value is None else value[..., rows, :][..., cols]
              for name, value in _pixel_fields(view).items() if name != "image"}
    intrinsics = view.intrinsics.clone()
    intrinsics[0] *= out_w / width
    intrinsics[1] *= out_h / height
    image = image_tensor(resized)
    return dataclasses.replace(view, image=image, intrinsics=intrinsics, **fields)


def nearest_indices(size_in: int, size_out: int) -> torch.Tensor:
    """(size_out,) source indices of OpenCV's INTER_NEAREST resize: min(floor(i * in / out), in - 1)."""
    step = 1.0 / (size_out / size_in)
    return torch.from_numpy(np.minimum(np.floor(np.arange(size_out) * step), size_in - 1).astype(np.int64))


def _pixel_fields(view: ViewRecord) -> dict:
    """The per-pixel tensors of a view (image and the (H, W) maps)."""
    return {"image": view.image, "depth": view.depth, "mask_fg": view.mask_fg, "mask_valid": view.mask_valid}
