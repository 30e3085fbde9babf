"""Render a trained model along a camera trajectory: the frames of a fly-around video."""
from __future__ import annotations

from typing import Dict, Tuple

import torch

from recon_trainer.data.cameras import PerspectiveCameras
from recon_trainer.data.frame_data import FrameData
from recon_trainer.models.base import EvaluationMode


@torch.no_grad()
def render_trajectory(
    model: torch.nn.Module,
    cameras: PerspectiveCameras,
    render_size_hw: Tuple[int, int],
    device: str | torch.device = "cpu",
) -> Dict[str, torch.Tensor]:
    """Render each of the N `cameras` as the target of an evaluation forward pass (no images).

    Returns "rgb" (N, 3, H, W) in [0, 1], "depth" (N, 1, H, W) view-space depth and "mask"
    (N, 1, H, W) opacity, on the CPU.
    """
    model.eval()
    outputs = {"rgb": [], "depth": [], "mask": []}
    size = torch.tensor([list(render_size_hw)], dtype=torch.long)
    for index in range(len(cameras)):
        batch = FrameData(camera=cameras[index], image_size_hw=size).to(device)
        preds = model(batch, evaluation_mode=EvaluationMode.EVALUATION)
        outputs["rgb"].append(preds["images_render"][:1].float().cpu())
        outputs["depth"].append(preds["depths_render"][:1].float().cpu())
        outputs["mask"].append(preds["masks_render"][:1].float().cpu())
    return {key: torch.cat(values) for key, values in outputs.items()}
