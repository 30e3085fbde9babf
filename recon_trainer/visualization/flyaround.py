"""Render a trained model along a camera trajectory: the frames and videos of a fly-around."""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import torch

from recon_trainer.config import ConfigError
from recon_trainer.data.cameras import PerspectiveCameras, join_cameras
from recon_trainer.data.frame_data import FrameData, collate
from recon_trainer.models.base import EvaluationMode
from recon_trainer.rendering.trajectory import circular_trajectory
from recon_trainer.visualization.video import colorize_depth, to_uint8_frames, write_video


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
    uses (without sources). Returns "rgb" (N, 3, H, W) in [0, 1], "depth" (N, 1, H, W) rendered
    depth (depths_render: distance along the ray by default) and "mask" (N, 1, H, W) opacity, on the CPU.
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


def film_flyaround(
    model: torch.nn.Module,
    dataset: Any,
    out_dir: str,
    render_size_hw: Tuple[int, int],
    video_size_hw: Tuple[int, int],
    n_cameras: int,
    fps: int,
    n_source_views: int,
    device: torch.device,
) -> Dict[str, str]:
    """Videos rgb.mp4, depth.mp4 and mask.mp4 in out_dir of `model` rendered along a circle of
    `n_cameras` fitted to the cameras of `dataset` (a split of frames with cameras).

    A model that reads source views (it has a `view_pooler`) gets `n_source_views` frames of the
    split, evenly spaced. Returns {"rgb" | "depth" | "mask": video path}.
    """
    if getattr(dataset[0], "camera", None) is None:
        raise ConfigError("the frames of this experiment have no cameras to film from; for a model that predicts "
                          "from single images give images_dir=<folder of images>")
    cameras = circular_trajectory(join_cameras([dataset[i].camera for i in range(len(dataset))]), n_cameras)
    sources = None
    if getattr(model, "view_pooler", None) is not None:
        if n_source_views < 1:
            raise ConfigError(f"n_source_views={n_source_views}: this model renders from source views; use >= 1")
        picks = torch.linspace(0, len(dataset) - 1, min(n_source_views, len(dataset))).round().long().tolist()
        sources = collate([dataset[i] for i in picks])
    frames = render_trajectory(model, cameras, render_size_hw, device, sources, dataset[0].sequence_name)
    videos = {"rgb": frames["rgb"], "depth": colorize_depth(frames["depth"], frames["mask"]), "mask": frames["mask"]}
    paths = {}
    for name, video in videos.items():
        paths[name] = os.path.join(out_dir, f"{name}.mp4")
        write_video(paths[name], to_uint8_frames(video, video_size_hw), fps=fps)
    return paths
