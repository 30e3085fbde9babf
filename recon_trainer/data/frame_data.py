"""FrameData: one frame, or a batch of frames, of posed images with their ground truth.

Every field is optional so that one type serves NVS (images, masks, cameras), depth estimation
(images, depths) and multi-view methods. A single frame holds unbatched tensors; `collate`
stacks a list of frames into a batch (leading dimension B) and joins their cameras;
`view_frame_data` makes one frame of a ViewRecord (data/records.py).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Union

import torch

from recon_trainer.data.cameras import PerspectiveCameras, join_cameras
from recon_trainer.data.records import ViewRecord

# Frame types: a frame is "train_known", "test_unseen", ... (split and whether its view is known).
FRAME_TYPE_TRAIN = "train"
FRAME_TYPE_TEST = "test"
FRAME_TYPE_KNOWN = "known"
FRAME_TYPE_UNSEEN = "unseen"


@dataclasses.dataclass
class FrameData:
    """Posed frame(s); shapes below are for a batch, a single frame drops the leading B.

    image_rgb: (B, 3, H, W) in [0, 1].
    fg_probability: (B, 1, H, W) foreground mask in [0, 1].
    mask_crop: (B, 1, H, W) 1 where the image has valid (uncropped-in) pixels.
    depth_map: (B, 1, H, W) view-space depth (pytorch3d Z) in scene units, 0 where unknown.
    depth_mask: (B, 1, H, W) 1 where depth_map (or disparity_map) is valid.
    disparity_map: (B, 1, H, W) inverse depth known only up to scale and shift (e.g. stereo
        disparity, or 1 / depth_map), the target of relative-depth methods; 0 where unknown.
    camera: B cameras (pytorch3d conventions, NDC intrinsics).
    image_size_hw: (B, 2) image height and width in pixels.
    sequence_name, frame_type, image_path: one string per frame.
    frame_number: (B,) index of the frame in its sequence; frame_timestamp: (B,) seconds.
    meta: free-form extras (not collated beyond a list of per-frame dicts).
    """

    image_rgb: Optional[torch.Tensor] = None
    fg_probability: Optional[torch.Tensor] = None
    mask_crop: Optional[torch.Tensor] = None
    depth_map: Optional[torch.Tensor] = None
    depth_mask: Optional[torch.Tensor] = None
    disparity_map: Optional[torch.Tensor] = None
    camera: Optional[PerspectiveCameras] = None
    image_size_hw: Optional[torch.Tensor] = None
    frame_number: Optional[torch.Tensor] = None
    frame_timestamp: Optional[torch.Tensor] = None
    sequence_name: Optional[Union[str, List[str]]] = None
    sequence_category: Optional[Union[str, List[str]]] = None
    frame_type: Optional[Union[str, List[str]]] = None
    image_path: Optional[Union[str, List[str]]] = None
    meta: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def to(self, device: Union[str, torch.device]) -> "FrameData":
        """A copy with every tensor and the cameras on `device` (strings are shared)."""
        moved = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, torch.Tensor) or isinstance(value, PerspectiveCameras):
                value = value.to(device)
            moved[field.name] = value
        return FrameData(**moved)

    def as_kwargs(self) -> Dict[str, Any]:
        """The fields as a dict (shallow), for `model(**frame_data.as_kwargs())`-style calls."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def __len__(self) -> int:
        """The batch size; 1 for a single (uncollated) frame."""
        if self.camera is not None:
            return len(self.camera)
        if self.image_rgb is not None:
            return self.image_rgb.shape[0] if self.image_rgb.dim() == 4 else 1
        raise ValueError("FrameData has neither camera nor image_rgb: its length is unknown")


def _collate_values(name: str, values: List[Any]) -> Any:
    present = [v is not None for v in values]
    if not any(present):
        return None
    if not all(present):
        raise ValueError(f"collate: field {name!r} is set on some frames and missing on others")
    first = values[0]
    if isinstance(first, torch.Tensor):
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) > 1:
            raise ValueError(f"collate: field {name!r} has different shapes across frames: {sorted(shapes)}")
        return torch.stack(values)
    if isinstance(first, PerspectiveCameras):
        return join_cameras(values)
    if isinstance(first, (int, float)):
        return torch.tensor(values)
    return list(values)


def collate(frames: List[FrameData]) -> FrameData:
    """Stack single frames (or join batches of cameras) into one batch FrameData."""
    if not frames:
        raise ValueError("collate: no frames to collate")
    batch = {}
    for field in dataclasses.fields(FrameData):
        values = [getattr(f, field.name) for f in frames]
        if field.name == "meta":
            batch["meta"] = {"frames": values} if any(values) else {}
        else:
            batch[field.name] = _collate_values(field.name, values)
    return FrameData(**batch)


def view_frame_data(
    view: ViewRecord, frame_type: Optional[str] = None, mask_crop: Optional[torch.Tensor] = None, **fields: Any
) -> FrameData:
    """A single-frame FrameData of one view.

    image_rgb: view.image (3, H, W); fg_probability: view.mask_fg as float (1, H, W); mask_crop:
    the given (1, H, W) tensor (one shared by every frame of a provider), else view.mask_valid as
    float, else None; depth_map (disparity_map for a record of disparity): the depth where
    `view.depth_valid()`, 0 elsewhere, with depth_mask = that validity as float (1, H, W) (None
    without depth); camera: `view.to_cameras()` (pytorch3d
    NDC, image_size set) when the view has intrinsics and a pose; image_size_hw (2,) int64;
    frame_number int(view.frame); sequence_name view.sequence; image_path view.path (None when
    empty). `fields` set or replace FrameData fields (e.g. meta, sequence_category, depth_mask).
    """
    depth_map = disparity_map = depth_mask = None
    if view.depth is not None:
        valid = view.depth_valid()
        values = torch.where(valid, view.depth, torch.zeros_like(view.depth))[None]
        if view.depth_kind == "disparity":
            disparity_map = values
        else:
            depth_map = values
        depth_mask = valid.float()[None]
    if mask_crop is None and view.mask_valid is not None:
        mask_crop = view.mask_valid.float()[None]
    values = dict(
        image_rgb=view.image,
        fg_probability=None if view.mask_fg is None else view.mask_fg.float()[None],
        mask_crop=mask_crop,
        depth_map=depth_map,
        disparity_map=disparity_map,
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
