"""The NVS providers' FrameData items, built from the ViewRecords their formats read.

Each provider reads a frame as a ViewRecord (data/records.py: image, soft foreground mask, depth,
intrinsics in pixels, OpenCV camera-to-world) and makes its single-frame FrameData with
`view_frame_data`, the one converter; what only a provider knows (frame_type, its meta, a shared
mask_crop) comes as arguments.
"""
from __future__ import annotations

from typing import Any, Optional

import torch

from recon_trainer.data.frame_data import FrameData
from recon_trainer.data.records import ViewRecord


def view_frame_data(
    view: ViewRecord, frame_type: str, mask_crop: Optional[torch.Tensor] = None, **fields: Any
) -> FrameData:
    """A single-frame FrameData of one view.

    image_rgb: view.image (3, H, W); fg_probability: view.mask_fg as float (1, H, W); mask_crop:
    the given (1, H, W) tensor (one shared by every frame of a provider), else view.mask_valid as
    float, else None; depth_map: the depth where `view.depth_valid()`, 0 elsewhere, with depth_mask
    = that validity as float (1, H, W) (None without depth); camera: `view.to_cameras()` (pytorch3d
    NDC, image_size set) when the view has intrinsics and a pose; image_size_hw (2,) int64;
    frame_number int(view.frame); sequence_name view.sequence; image_path view.path (None when
    empty). `fields` set or replace FrameData fields (e.g. meta, sequence_category, depth_mask).
    """
    depth_map = depth_mask = None
    if view.depth is not None:
        valid = view.depth_valid()
        depth_map = torch.where(valid, view.depth, torch.zeros_like(view.depth))[None]
        depth_mask = valid.float()[None]
    if mask_crop is None and view.mask_valid is not None:
        mask_crop = view.mask_valid.float()[None]
    values = dict(
        image_rgb=view.image,
        fg_probability=None if view.mask_fg is None else view.mask_fg.float()[None],
        mask_crop=mask_crop,
        depth_map=depth_map,
        depth_mask=depth_mask,
        camera=view.to_cameras() if view.intrinsics is not None and view.camera_to_world is not None else None,
        image_size_hw=torch.tensor(view.image_size_hw, dtype=torch.long),
        frame_number=int(view.frame),
        sequence_name=view.sequence,
        frame_type=frame_type,
        image_path=view.path or None,
    )
    values.update(fields)
    return FrameData(**values)
