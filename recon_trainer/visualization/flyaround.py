"""Render a trained model along a camera trajectory: the frames of a fly-around video."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from recon_trainer.data.cameras import PerspectiveCameras, join_cameras
from recon_trainer.data.frame_data import FrameData
from recon_trainer.models.base import EvaluationMode


def with_source_views(target: PerspectiveCameras, sources: FrameData) -> FrameData:
    """A batch whose first frame is the `target` camera (image and mask zero, as in evaluation; the
    sequence of the first source) followed by the source frames (images (S, 3, H, W), masks, cameras)."""

    def prepend_zeros(value: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return None if value is None else torch.cat([torch.zeros_like(value[:1]), value])

    return FrameData(
        camera=join_cameras([target, sources.camera]),
        image_rgb=prepend_zeros(sources.image_rgb),
        fg_probability=prepend_zeros(sources.fg_probability),
        image_size_hw=None if sources.image_size_hw is None else sources.image_size_hw[[0, *range(len(sources))]],
        sequence_name=None if sources.sequence_name is None else [sources.sequence_name[0], *sources.sequence_name],
    )


@torch.no_grad()
def render_trajectory(
    model: torch.nn.Module,
    cameras: PerspectiveCameras,
    render_size_hw: Tuple[int, int],
    device: str | torch.device = "cpu",
    sources: Optional[FrameData] = None,
    sequence_name: Optional[str] = None,
) -> Dict[str, torch.Tensor]:
    """Render each of the N `cameras` as the target of an evaluation forward pass.

    sources: known frames (a collated batch) that image-conditioned models read as source views;
    None renders from the cameras alone. sequence_name: the sequence whose code a global encoder
    uses (without sources). Returns "rgb" (N, 3, H, W) in [0, 1], "depth"
    (N, 1, H, W) view-space depth and "mask" (N, 1, H, W) opacity, on the CPU.
    """
    model.eval()
    outputs = {"rgb": [], "depth": [], "mask": []}
    size = torch.tensor([list(render_size_hw)], dtype=torch.long)
    for index in range(len(cameras)):
        if sources is None:
            batch = FrameData(camera=cameras[index], image_size_hw=size, sequence_name=sequence_name)
        else:
            batch = with_source_views(cameras[index], sources)
        preds = model(batch.to(device), evaluation_mode=EvaluationMode.EVALUATION)
        outputs["rgb"].append(preds["images_render"][:1].float().cpu())
        outputs["depth"].append(preds["depths_render"][:1].float().cpu())
        outputs["mask"].append(preds["masks_render"][:1].float().cpu())
    return {key: torch.cat(values) for key, values in outputs.items()}
